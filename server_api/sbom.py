"""A version's bills of materials, one per arch and format (core.sbom): the files its publish
made from the package manifest and stored (`catalog.publish`; feeds list them, gc collects
them with the version's other files), or, for a version published before they were stored,
made from the manifest when asked: the same bytes either way."""

from sqlmodel import Session, select

from core.arch import UnknownArchError, to_lxd
from core.sbom import ImageBom, SbomFormat, sbom_json
from server_api.catalog import CatalogError
from server_api.manifests import read_manifest
from server_api.models import Version, VersionArch
from server_api.store import FileStore


def version_sbom(
    session: Session, store: FileStore, version: Version, arch: str, fmt: SbomFormat
) -> bytes:
    """The bill of materials of one arch (LXD's name or Debian's) of `version`; CatalogError
    404 for an arch the version lacks, one published without a manifest, or one whose files
    gc collected."""
    where = f"version {version.serial} of image {version.image}"
    try:
        arch = to_lxd(arch)
    except UnknownArchError:
        raise CatalogError(404, f"{where} has no arch {arch}") from None
    varch = session.exec(
        select(VersionArch).where(VersionArch.version_id == version.id, VersionArch.arch == arch)
    ).first()
    if varch is None:
        raise CatalogError(404, f"{where} has no arch {arch}")
    if varch.manifest_sha256 is None:
        raise CatalogError(404, f"{where} was published without a package manifest of {arch}")
    try:
        if stored := varch.sbom_file(fmt):
            return store.path(stored[0]).read_bytes()
        packages = read_manifest(store, varch.manifest_sha256)
    except FileNotFoundError:
        raise CatalogError(404, f"the files of {where} were deleted, its manifest too") from None
    bom = ImageBom(
        image=version.image,
        serial=version.serial,
        arch=arch,
        created_at=version.created_at,
        packages=packages,
        fingerprint=varch.fingerprint,
    )
    return sbom_json(bom, fmt)
