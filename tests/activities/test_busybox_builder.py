"""The busybox builder: real dpkg-deb and mksquashfs on Debian's busybox-static debs."""

import hashlib
import io
import shutil
import subprocess
import tarfile
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from activities.builders.base import BuildJob, HostDirs
from activities.builders.busybox import build_busybox
from activities.builders.errors import BuildError
from activities.builders.image_files import squashfs_packages
from core.arch import LxdArch
from core.catalog import FileType
from core.manifest import parse_manifest
from core.spec import ImageSpec
from harness.servers import DEBS

# needs the host deploy/setup-host prepared (the busybox-static debs)
pytestmark = pytest.mark.lxd

DIRS = HostDirs(debs=DEBS, cache=DEBS.parent / "cache")
SPEC = ImageSpec(
    os="busybox", release="1.35", release_title="BusyBox 1.35", arches=["x86_64", "i686"]
)
SERIAL = "20261125_0001"


def _need_deb(debian_arch: str) -> None:
    """The host deploy/setup-host prepared: a missing piece fails, it is never skipped."""
    assert list(DEBS.glob(f"busybox-static_*_{debian_arch}.deb")), f"run deploy/setup-host: {DEBS}"
    for tool in ("dpkg-deb", "mksquashfs"):
        assert shutil.which(tool), f"{tool} not installed: run deploy/setup-host"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("arch", "debian_arch"), [("x86_64", "amd64"), ("i686", "i386")])
def test_builds_split_image(tmp_path: Path, arch: LxdArch, debian_arch: str) -> None:
    _need_deb(debian_arch)
    lines: list[str] = []
    out = build_busybox(BuildJob(SPEC, arch, SERIAL, tmp_path / arch, lines.append), DIRS)

    assert [(b.ftype, b.name) for b, _ in out] == [
        (FileType.metadata, "lxd.tar.xz"),
        (FileType.squashfs, "rootfs.squashfs"),
        (FileType.manifest, "rootfs.manifest"),
    ]
    for built, path in out:
        assert path.is_file() and path.parent == tmp_path / arch
        assert built.size == path.stat().st_size > 0
        assert built.sha256 == _sha256(path)
    assert lines and all(line.startswith(f"{arch}: ") for line in lines)
    assert not list((tmp_path / arch).glob(".build-*")), "temporary build dir left behind"

    with tarfile.open(out[0][1], "r:xz") as tar:
        names = set(tar.getnames())
        meta = yaml.safe_load(tar.extractfile("metadata.yaml").read())  # type: ignore[union-attr]
        hostname_tpl = tar.extractfile("templates/hostname.tpl").read().decode()  # type: ignore[union-attr]
    assert {"metadata.yaml", "templates/hostname.tpl", "templates/hosts.tpl"} <= names
    assert meta["architecture"] == arch
    assert isinstance(meta["creation_date"], int) and meta["creation_date"] > 1_700_000_000
    assert meta["properties"] == {
        "os": "busybox",
        "release": "1.35",
        "variant": "default",
        "architecture": debian_arch,
        "description": f"BusyBox 1.35 {debian_arch} (default) ({SERIAL})",
        "serial": SERIAL,
    }
    assert meta["templates"]["/etc/hostname"]["template"] == "hostname.tpl"
    assert "container.name" in hostname_tpl

    # The manifest: the one package the rootfs is made of, at the .deb's version (whose
    # file name has the epoch's colon as %3a).
    deb = next(DEBS.glob(f"busybox-static_*_{debian_arch}.deb"))
    version = unquote(deb.name.split("_")[1])
    assert out[2][1].read_bytes() == f"busybox-static\t{version}\n".encode()
    assert parse_manifest(out[2][1].read_bytes()) == {"busybox-static": version}

    if shutil.which("unsquashfs"):
        listing = subprocess.run(
            ["unsquashfs", "-lls", str(out[1][1])], check=True, capture_output=True, text=True
        ).stdout
        for needle in (
            "squashfs-root/bin/busybox",
            "squashfs-root/sbin/init -> /bin/busybox",
            "squashfs-root/bin/sh -> /bin/busybox",
            "squashfs-root/bin/true -> /bin/busybox",
            "squashfs-root/etc/inittab",
            "squashfs-root/etc/init.d/rcS",
            "squashfs-root/etc/udhcpc.script",
        ):
            assert needle in listing
        rcs = [
            line for line in listing.splitlines() if line.endswith("squashfs-root/etc/init.d/rcS")
        ]
        assert rcs[0].startswith("-rwxr-xr-x root/root")


def test_same_inputs_give_same_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _need_deb("amd64")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1795600000")
    a = build_busybox(BuildJob(SPEC, "x86_64", SERIAL, tmp_path / "a"), DIRS)
    b = build_busybox(BuildJob(SPEC, "x86_64", SERIAL, tmp_path / "b"), DIRS)
    assert [f for f, _ in a] == [f for f, _ in b]
    with tarfile.open(a[0][1], "r:xz") as tar:
        meta = yaml.safe_load(io.BytesIO(tar.extractfile("metadata.yaml").read()))  # type: ignore[union-attr]
    assert meta["creation_date"] == 1795600000


def test_missing_deb_says_to_run_setup_host(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as err:
        build_busybox(
            BuildJob(SPEC, "i686", SERIAL, tmp_path / "out"),
            HostDirs(debs=tmp_path / "empty", cache=tmp_path),
        )
    msg = str(err.value)
    assert "busybox-static_*_i386.deb" in msg and "deploy/setup-host" in msg
    assert "\n" not in msg


def test_bad_serial_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="serial"):
        build_busybox(BuildJob(SPEC, "x86_64", "latest", tmp_path), DIRS)


def test_a_squashfs_rootfs_lists_what_its_dpkg_database_does(tmp_path: Path) -> None:
    """How the distrobuilder builder reads a rootfs it only has as a squashfs; one without
    a dpkg database (busybox's) lists nothing."""
    root = tmp_path / "root"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(
        "Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2-2\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n"
    )
    squashfs = tmp_path / "rootfs.squashfs"
    (tmp_path / "with").mkdir()
    (tmp_path / "without").mkdir()
    subprocess.run(["mksquashfs", root, squashfs, "-quiet", "-no-progress"], check=True)
    assert squashfs_packages(squashfs, tmp_path / "with") == {"bash": "5.2-2"}

    (root / "var/lib/dpkg/status").unlink()
    subprocess.run(
        ["mksquashfs", root, squashfs, "-noappend", "-quiet", "-no-progress"], check=True
    )
    assert squashfs_packages(squashfs, tmp_path / "without") == {}
