"""The one way the tests and benchmarks publish a version: `publish` uploads each arch's files
(random ones, given ones, or a busybox build) with an optional package manifest, publishes the
version and moves it through the states asked for. Images and serials no other caller uses."""

import hashlib
import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from activities.builders.base import BuildJob, HostDirs
from activities.builders.image_files import sha256_file
from activities.builders.registry import BUILDERS
from clients.catalog import CatalogClient
from core.arch import LxdArch
from core.catalog import (
    ArchFiles,
    AssessmentReport,
    BuiltFile,
    FileType,
    TransitionRequest,
    VersionCreate,
    VersionView,
)
from core.spec import ImageSpec
from harness.servers import DEBS, RunningServer, client

Built = list[tuple[BuiltFile, Path]]

# Two package manifests of one image, an older and a newer (one package gone, one new, one
# upgraded), as the manifest and browser tests publish them.
OLD_MANIFEST = b"bash\t5.1-6\ngone\t1.0\nlibc6\t2.36-9\n"
NEW_MANIFEST = b"bash\t5.2.15-2+b7\nlibc6\t2.36-9\nnew-tool\t0.1\n"

_serials = (f"20261126-{n:04d}" for n in itertools.count(1))
_names = (f"img{n}" for n in itertools.count(1))


def next_serial() -> str:
    return next(_serials)


def new_image(**overrides: object) -> ImageSpec:
    """An image no other caller uses, so retention and feeds of one test stay its own."""
    fields = {
        "os": next(_names),
        "release": "one",
        "arches": ["x86_64", "i686"],
        "checks": ["boots"],
    }
    return ImageSpec.model_validate(fields | overrides)


def busybox_spec(release: str, **fields: object) -> ImageSpec:
    """A one-arch (x86_64) busybox image: fast to build and boot."""
    return ImageSpec.model_validate(
        {"os": "busybox", "release": release, "arches": ["x86_64"], **fields}
    )


def stored(path: Path, ftype: FileType, name: str | None = None) -> tuple[BuiltFile, Path]:
    """A file on disk declared as one of a version's files."""
    size = path.stat().st_size
    return BuiltFile(ftype=ftype, name=name or path.name, sha256=sha256_file(path), size=size), path


def fake_files(tmp: Path, arch: str = "x86_64") -> Built:
    """Two small random files declared as an image's metadata and rootfs (API tests only)."""
    tmp.mkdir(parents=True, exist_ok=True)
    out = []
    for ftype, name in ((FileType.metadata, "lxd.tar.xz"), (FileType.squashfs, "rootfs.squashfs")):
        path = tmp / f"{arch}-{name}"
        path.write_bytes(os.urandom(4096))
        out.append(stored(path, ftype, name))
    return out


def manifest_file(tmp: Path, arch: str, data: bytes) -> tuple[BuiltFile, Path]:
    """A package manifest (`name<TAB>version` lines) as one arch's third file."""
    path = tmp / f"{arch}-{hashlib.sha256(data).hexdigest()[:12]}.manifest"
    path.write_bytes(data)
    return stored(path, FileType.manifest, "rootfs.manifest")


def build(image: ImageSpec, serial: str, out: Path, arch: LxdArch = "x86_64") -> Built:
    """One arch of `image` built by its builder into `out` (debs from the state dir)."""
    job = BuildJob(image, arch, serial, out / serial / arch)
    return BUILDERS[image.builder](job, HostDirs(DEBS, out))


def upload(
    catalog: CatalogClient,
    image: ImageSpec,
    serial: str,
    *,
    tmp: Path | None = None,
    files: Mapping[LxdArch, Built] | Mapping[str, Built] | None = None,
    build_in: Path | None = None,
    manifest: bytes | None = None,
) -> VersionCreate:
    """Each arch's files uploaded with `manifest` beside them unless None: the publish
    request, not sent. The files: `files`, else every arch of the image built by its builder
    into `build_in`, else random ones in `tmp`."""
    if files is None and build_in is not None:
        files = {arch: build(image, serial, build_in, arch) for arch in image.arches}
    if files is None:
        assert tmp is not None, "random files need a directory"
        files = {arch: fake_files(tmp, arch) for arch in image.arches}
    arches = []
    for arch, given in files.items():
        extra = [manifest_file(tmp or given[0][1].parent, arch, manifest)] if manifest else []
        for file, path in given + extra:
            catalog.upload(path, file)
        arches.append(ArchFiles(arch=arch, files=[f for f, _ in given + extra]))
    return VersionCreate(spec=image, serial=serial, arches=arches)


@dataclass(frozen=True)
class Published:
    request: VersionCreate
    view: VersionView  # as the last call (the publish or the last move) answered

    @property
    def serial(self) -> str:
        return self.request.serial

    @property
    def fingerprint(self) -> str:
        """The first arch's (the only one, for a one-arch version)."""
        return self.view.arches[0].fingerprint

    def __iter__(self) -> Iterator[str]:
        """`serial, fingerprint = publish(...)`."""
        return iter((self.serial, self.fingerprint))


def publish(
    to_catalog: CatalogClient | RunningServer,
    image: ImageSpec,
    serial: str | None = None,
    *,
    tmp: Path | None = None,
    files: Mapping[LxdArch, Built] | Mapping[str, Built] | None = None,
    build_in: Path | None = None,
    manifest: bytes | None = None,
    to: Sequence[str] = (),
) -> Published:
    """Upload (see `upload`), publish and move the version through the states `to` (every
    required check recorded passed before a move to active). A server: as its publisher."""
    if isinstance(to_catalog, RunningServer):
        with closing(client(to_catalog, to_catalog.token)) as catalog:
            return publish(
                catalog,
                image,
                serial,
                tmp=tmp,
                files=files,
                build_in=build_in,
                manifest=manifest,
                to=to,
            )
    catalog, serial = to_catalog, serial or next_serial()
    request = upload(
        catalog, image, serial, tmp=tmp, files=files, build_in=build_in, manifest=manifest
    )
    view = catalog.publish(request)
    for state in to:
        if state == "active":
            pass_all(catalog, image, serial)
        view = move(catalog, image, serial, state)
    return Published(request, view)


def pass_all(catalog: CatalogClient, image: ImageSpec, serial: str) -> None:
    """Record a pass for every check the server still needs."""
    for arch, checks in catalog.missing_checks(image.name, serial).items():
        for check in checks:
            report = AssessmentReport(arch=arch, check=check, host="h", state="passed")
            catalog.record(image.name, serial, report)


def move(catalog: CatalogClient, image: ImageSpec, serial: str, *states: str) -> VersionView:
    """Move the version through `states` in turn: the last answer."""
    assert states, "move where?"
    for to in states:
        view = catalog.transition(image.name, serial, TransitionRequest(to=to, reason="test"))
    return view
