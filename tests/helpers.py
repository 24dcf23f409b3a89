"""Small builders of test input shared by several test modules."""

import hashlib
import os
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from core import search_attributes as sa
from core.catalog_client import CatalogClient
from core.models import (
    ArchFiles,
    BuiltFile,
    FileType,
    ImageSpec,
    TransitionRequest,
    VersionCreate,
    VersionState,
)
from deploy.stack import temporal_binary


def fake_files(tmp: Path, arch: str = "x86_64") -> list[tuple[BuiltFile, Path]]:
    """Two small random files declared as an image's metadata and rootfs (API tests only)."""
    out = []
    for ftype, name in ((FileType.metadata, "lxd.tar.xz"), (FileType.squashfs, "rootfs.squashfs")):
        data = os.urandom(4096)
        path = tmp / f"{arch}-{name}"
        path.write_bytes(data)
        out.append(
            (BuiltFile(ftype=ftype, name=name, sha256=hashlib.sha256(data).hexdigest(),
                       size=len(data)), path)
        )  # fmt: skip
    return out


def publish_fake(catalog: CatalogClient, tmp: Path, image: ImageSpec, serial: str) -> VersionCreate:
    arches = []
    for arch in image.arches:
        files = fake_files(tmp, arch)
        for file, path in files:
            catalog.upload(path, file)
        arches.append(ArchFiles(arch=arch, files=[f for f, _ in files]))
    req = VersionCreate(image=image, serial=serial, arches=arches)
    catalog.publish(req)
    return req


def publish_built(
    catalog: CatalogClient, image: ImageSpec, serial: str, arch: str,
    built: list[tuple[BuiltFile, Path]],
) -> str:  # fmt: skip
    """Upload one arch's built files, publish the version, move it to testing: its fingerprint."""
    for file, path in built:
        catalog.upload(path, file)
    catalog.publish(
        VersionCreate(
            image=image, serial=serial, arches=[ArchFiles(arch=arch, files=[f for f, _ in built])]
        )
    )
    version = catalog.transition(
        image.name, serial, TransitionRequest(to=VersionState.testing, reason="published by a test")
    )
    return version.arches[0].fingerprint


def busybox_spec(release: str, **fields: object) -> ImageSpec:
    """A one-arch (x86_64) busybox image for a test: fast to build and boot."""
    return ImageSpec.model_validate(
        {"os": "busybox", "release": release, "arches": ["x86_64"], **fields}
    )


async def start_dev_server() -> WorkflowEnvironment:
    """A real Temporal dev server (in memory) with the project's search attributes."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=sa.ALL,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
