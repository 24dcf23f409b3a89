"""Versions published with package manifests, as the manifest and browser tests make them."""

import hashlib
from pathlib import Path

from clients.catalog import CatalogClient
from core.catalog import ArchFiles, BuiltFile, FileType, VersionCreate
from core.spec import ImageSpec
from tests.support import fake_files

OLD = b"bash\t5.1-6\ngone\t1.0\nlibc6\t2.36-9\n"
NEW = b"bash\t5.2.15-2+b7\nlibc6\t2.36-9\nnew-tool\t0.1\n"


def manifest_file(tmp: Path, arch: str, data: bytes) -> tuple[BuiltFile, Path]:
    sha256 = hashlib.sha256(data).hexdigest()
    path = tmp / f"{arch}-{sha256[:12]}.manifest"
    path.write_bytes(data)
    file = BuiltFile(ftype=FileType.manifest, name="rootfs.manifest", sha256=sha256, size=len(data))
    return file, path


def request(
    catalog: CatalogClient, tmp: Path, image: ImageSpec, serial: str, manifest: bytes | None
) -> VersionCreate:
    """Each arch's fake files and, unless None, `manifest`, uploaded: the publish request."""
    arches = []
    for arch in image.arches:
        files = fake_files(tmp, arch) + ([manifest_file(tmp, arch, manifest)] if manifest else [])
        for file, path in files:
            catalog.upload(path, file)
        arches.append(ArchFiles(arch=arch, files=[f for f, _ in files]))
    return VersionCreate(spec=image, serial=serial, arches=arches)
