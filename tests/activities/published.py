"""A busybox version in testing, as the check and fault tests start from it."""

import itertools
import uuid
from pathlib import Path

from activities.builders.base import BuildJob, HostDirs
from activities.builders.busybox import build_busybox
from clients.catalog import CatalogClient
from core.config import Settings
from core.spec import ImageSpec
from tests.support import DEBS, publish_built

_serials = itertools.count(1)
# Labels of this run's instances: concurrent runs on one LXD must not judge each other's.
SCOPE = f"tests@{uuid.uuid4().hex[:8]}"


def publish_busybox(
    catalog: CatalogClient, settings: Settings, tmp: Path, image: ImageSpec
) -> tuple[str, str]:
    """Build x86_64, upload, publish to testing; returns (serial, fingerprint)."""
    serial = f"20261125-lxd{next(_serials)}"
    built = build_busybox(
        BuildJob(image, "x86_64", serial, tmp / "out"),
        HostDirs(debs=settings.deb_dir or DEBS, cache=tmp),
    )
    return serial, publish_built(catalog, image, serial, "x86_64", built)
