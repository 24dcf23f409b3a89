"""A version's package manifests as the API and the pages show them: the packages of each
arch and what changed since the image's previous version with a manifest of that arch."""

from sqlmodel import Session, col, select

from core.catalog import ArchPackages, VersionPackages
from core.manifest import Package, Packages, diff_manifests, parse_manifest
from server_api.models import Version, VersionArch
from server_api.store import FileStore


def read_manifest(store: FileStore, sha256: str) -> Packages:
    """The packages of a stored manifest: ManifestError if it is not one, FileNotFoundError
    if its bytes are gone."""
    return parse_manifest(store.path(sha256).read_bytes())


def _stored(store: FileStore, sha256: str | None) -> Packages | None:
    """None when there is no manifest, or gc took its bytes since its row was read."""
    if sha256 is None:
        return None
    try:
        return read_manifest(store, sha256)
    except FileNotFoundError:
        return None


def _previous(session: Session, version: Version, arch: str) -> tuple[str, str] | None:
    """(serial, manifest sha256) of the newest older version of the image with a manifest
    of `arch` whose files are kept."""
    row = session.exec(
        select(Version.serial, VersionArch.manifest_sha256)
        .join(VersionArch, col(VersionArch.version_id) == col(Version.id))
        .where(
            Version.image == version.image,
            col(Version.serial) < version.serial,
            col(Version.files_deleted_at).is_(None),
            VersionArch.arch == arch,
            col(VersionArch.manifest_sha256).is_not(None),
        )
        .order_by(col(Version.serial).desc())
        .limit(1)
    ).first()
    return (row[0], row[1]) if row and row[1] else None


def version_packages(session: Session, store: FileStore, version: Version) -> VersionPackages:
    arches = []
    for varch in session.exec(
        select(VersionArch)
        .where(VersionArch.version_id == version.id)
        .order_by(col(VersionArch.arch))
    ):
        packages = _stored(store, varch.manifest_sha256)
        found = _previous(session, version, varch.arch) if packages is not None else None
        previous = _stored(store, found[1]) if found else None
        arches.append(
            ArchPackages(
                arch=varch.arch,
                packages=None
                if packages is None
                else [Package(name=n, version=v) for n, v in sorted(packages.items())],
                previous=found[0] if found and previous is not None else None,
                diff=diff_manifests(previous, packages)
                if packages is not None and previous is not None
                else None,
            )
        )
    return VersionPackages(image=version.image, serial=version.serial, arches=arches)
