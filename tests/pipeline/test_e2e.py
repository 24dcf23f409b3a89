"""The real pipeline, end to end: build, publish to testing, test in LXD on every local
arch (by fingerprint, certificate pinned), promote to active."""

import pytest

from activities.lxd_test.instances import listed
from clients.catalog import CatalogClient
from clients.lxd import connect_lxd
from core.config import REPO_DIR
from core.images import load_image
from core.pipeline import PipelineInput
from tests.support import assert_no_failed_attempts, nothing_left
from workflows.trigger import new_serial, start_pipeline

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]


async def test_sample_image_reaches_active_on_every_local_arch(
    temporal, workers, catalog: CatalogClient, settings
) -> None:
    assert {"x86_64", "i686"} <= set(workers), f"this host runs only {workers}"
    image = load_image(REPO_DIR / "images" / "busybox.yaml")
    image = image.model_copy(update={"arches": ["x86_64", "i686"]})
    serial = new_serial()

    # Forced: an earlier test of the session may have made the same sample active.
    handle = await start_pipeline(temporal, PipelineInput(spec=image, serial=serial, force=True))
    result = await handle.result()

    assert result.state == "active", result.message
    await assert_no_failed_attempts(handle)
    version = catalog.version(image.name, serial)
    assert version.state == "active"
    recorded = {(a.arch, a.check, a.state) for a in version.assessments}
    # Busybox has no cloud-init, no systemd, and the bridge no IPv6: those do not apply.
    na = {"ipv6", "cloud-init", "journal"}
    assert recorded == {
        (arch, check, "not_applicable" if check in na else "passed")
        for arch in ("x86_64", "i686")
        for check in image.required_checks
    }
    assert all(a.host for a in version.assessments)
    assert catalog.missing_checks(image.name, serial) == {"x86_64": [], "i686": []}
    # Each arch's package manifest came along from the build: busybox-static, one package.
    manifests = catalog.manifest(image.name, serial).arches
    assert [(m.arch, [p.name for p in m.packages or []]) for m in manifests] == [
        ("i686", ["busybox-static"]),
        ("x86_64", ["busybox-static"]),
    ]
    lxd = connect_lxd(settings)
    await nothing_left(
        lambda: [i.name for i in listed(lxd) if i.config.get("user.icefloe.serial") == serial],
        f"test instance of {serial}",
    )
