"""The second guard at publish: a version whose definition and packages equal those of
the image's newest active version would be the same image again under a new serial, so
it is not published (the pipeline's inputs check is the first guard; this one holds
whatever the publisher believed). `VersionCreate.force` skips it."""

from collections.abc import Mapping

from sqlmodel import Session, col, select

from core.arch import LxdArch
from core.catalog import VersionState
from core.manifest import ManifestError, Packages
from server_api.manifests import read_manifest
from server_api.models import Version, VersionArch
from server_api.store import FileStore


def _same_packages(store: FileStore, stored: str | None, new: Packages) -> bool:
    """Whether the stored manifest `stored` lists exactly `new`; unreadable is unequal."""
    if stored is None:
        return False
    try:
        return read_manifest(store, stored) == new
    except (FileNotFoundError, ManifestError):
        return False


def unchanged_since(
    session: Session,
    store: FileStore,
    image: str,
    digest: str,
    packages: Mapping[LxdArch, Packages | None],
) -> str | None:
    """The serial of the image's newest active version if a new version with this
    definition digest and these packages per arch equals it: the same arches, each with a
    manifest listing the same packages at the same versions. None when anything differs or
    cannot be told (an arch without a manifest, on either side). Read in the publish's
    transaction and without a lock: a promotion committed meanwhile reads as one that came
    after this publish, which it does not depend on."""
    known = {arch: p for arch, p in packages.items() if p is not None}
    if len(known) != len(packages):
        return None
    newest = session.exec(
        select(Version)
        .where(Version.image == image, Version.state == VersionState.active)
        .order_by(col(Version.serial).desc())
        .limit(1)
    ).first()
    if newest is None or newest.spec_digest != digest:
        return None
    stored = {
        a.arch: a.manifest_sha256
        for a in session.exec(select(VersionArch).where(VersionArch.version_id == newest.id))
    }
    if stored.keys() != known.keys():
        return None
    if all(_same_packages(store, stored[arch], new) for arch, new in known.items()):
        return newest.serial
    return None
