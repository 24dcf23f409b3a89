"""What every builder shares: running tools, metadata.yaml and its tarball, the squashfs,
and the list of built files. LXD's split image format is the same whatever made the rootfs.
"""

import hashlib
import io
import os
import subprocess
import tarfile
import time
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from activities.builders.base import Progress
from activities.builders.errors import BuildError
from core.arch import DebianArch, LxdArch, UnknownArchError, to_debian
from core.catalog import FILE_NAMES, BuiltFile, FileType
from core.manifest import Packages, dpkg_installed, format_manifest
from core.spec import ImageSpec, Serial

METADATA_NAME = FILE_NAMES[FileType.metadata]
ROOTFS_NAME = FILE_NAMES[FileType.squashfs]
MANIFEST_NAME = FILE_NAMES[FileType.manifest]
DPKG_STATUS = Path("var/lib/dpkg/status")
# What a worker host lacking a tool is told to run.
SET_UP = "run deploy/setup-host --role arch"
# gzip: every squashfs-tools and kernel reads it; on a 250 MB Debian tree it took 13.5 s
# here against 21.5 s for zstd (5% smaller) and more for xz. Level 6 (gzip's own default,
# not mksquashfs' 9): on the busybox rootfs half the CPU time for 0.4% more bytes.
SQUASHFS_COMP = ("-comp", "gzip", "-Xcompression-level", "6")

# LXD fills these at instance creation, so every container gets its own name.
HOSTNAME_TEMPLATES = {
    "hostname.tpl": "{{ container.name }}\n",
    "hosts.tpl": "127.0.0.1 localhost\n127.0.1.1 {{ container.name }}\n",
}
_TEMPLATED = {"/etc/hostname": "hostname.tpl", "/etc/hosts": "hosts.tpl"}
# Images with cloud-init get a NoCloud seed, filled at creation like images.linuxcontainers.org
# does: the instance's `cloud-init.user-data` (else `user.user-data`) becomes its user data.
CLOUD_INIT = Path("usr/bin/cloud-init")
_SEED = "/var/lib/cloud/seed/nocloud-net"
CLOUD_INIT_TEMPLATES = {
    "cloud-init-meta.tpl": "instance-id: {{ container.name }}\n"
    "local-hostname: {{ container.name }}\n",
    "cloud-init-user.tpl": '{{ config_get("cloud-init.user-data", '
    'config_get("user.user-data", properties.default)) }}\n',
    "cloud-init-vendor.tpl": '{{ config_get("cloud-init.vendor-data", '
    'config_get("user.vendor-data", properties.default)) }}\n',
}
_CLOUD_INIT_TEMPLATED = {
    f"{_SEED}/meta-data": "cloud-init-meta.tpl",
    f"{_SEED}/user-data": "cloud-init-user.tpl",
    f"{_SEED}/vendor-data": "cloud-init-vendor.tpl",
}


def run_tool(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess[str]:
    """Run cmd; turn any failure into a one-line BuildError with the stderr tail."""
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise BuildError(f"{what}: {cmd[0]} is not installed; {SET_UP}") from None
    except subprocess.CalledProcessError as e:
        raise BuildError(
            f"{what} failed (exit {e.returncode}): {_tail(e.stderr or e.stdout)}"
        ) from None


def _tail(output: str | None, lines: int = 3) -> str:
    return " | ".join((output or "").strip().splitlines()[-lines:]) or "no output"


def stream_tool(cmd: list[str], what: str, progress: Progress, **kw) -> None:
    """Run a long tool, passing each output line to progress (heartbeats); BuildError on failure."""
    last: list[str] = []
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw
        )
    except FileNotFoundError:
        raise BuildError(f"{what}: {cmd[0]} is not installed; {SET_UP}") from None
    with proc:
        try:
            for line in proc.stdout or ():
                last = [*last[-19:], line.rstrip()]
                progress(f"{what}: {line.strip()}")
        finally:  # also on cancellation: never leave the tool running
            if proc.poll() is None:
                proc.kill()
    if proc.wait() != 0:
        raise BuildError(
            f"{what} failed (exit {proc.returncode}): {_tail(chr(10).join(last))}", retryable=True
        )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checked_inputs(arch: LxdArch, serial: str) -> DebianArch:
    """Refuse a bad serial or arch before any work; returns the Debian arch name."""
    try:
        TypeAdapter(Serial).validate_python(serial)
    except ValidationError as e:
        raise BuildError(f"bad serial {serial!r}: {e.errors()[0]['msg']}") from None
    try:
        return to_debian(arch)
    except UnknownArchError as e:
        raise BuildError(str(e)) from None


def creation_time() -> int:
    """SOURCE_DATE_EPOCH when set, so the same inputs give byte-identical files."""
    return int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())


def metadata(
    image: ImageSpec, arch: LxdArch, serial: str, created: int, cloud_init: bool = False
) -> dict:
    """metadata.yaml: what LXD requires, the properties feeds and `lxc image info` show, the
    templates LXD fills at creation (with `cloud_init`, the NoCloud seed too)."""
    debian_arch = to_debian(arch)
    templates: dict[str, dict[str, object]] = {
        path: {"when": ["create", "copy"], "template": tpl} for path, tpl in _TEMPLATED.items()
    }
    if cloud_init:
        templates |= {
            path: {
                "when": ["create", "copy"],
                "template": tpl,
                "properties": {"default": "#cloud-config\n{}"},
            }
            for path, tpl in _CLOUD_INIT_TEMPLATED.items()
        }
    title = image.release_title or f"{image.os} {image.release}"
    return {
        "architecture": arch,
        "creation_date": created,
        "properties": {
            "os": image.os,
            "release": image.release,
            "variant": image.variant,
            "architecture": debian_arch,
            "description": f"{title} {debian_arch} ({image.variant}) ({serial})",
            "serial": serial,
        },
        "templates": templates,
    }


def metadata_tar(path: Path, meta: dict, templates: dict[str, str], mtime: int) -> None:
    """Write an xz tarball of metadata.yaml and templates/, with fixed owners and mtimes."""

    def add(tar: tarfile.TarFile, name: str, data: bytes | None) -> None:
        info = tarfile.TarInfo(name)
        info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "root", "root"
        if data is None:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        else:
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))

    text = yaml.safe_dump(meta, sort_keys=False, default_flow_style=False)
    with tarfile.open(path, "w:xz", format=tarfile.GNU_FORMAT) as tar:
        add(tar, "metadata.yaml", text.encode())
        add(tar, "templates", None)
        for name in sorted(templates):
            add(tar, f"templates/{name}", templates[name].encode())


def squashfs(root: Path, dest: Path, created: int) -> None:
    run_tool(
        [
            "mksquashfs",
            str(root),
            str(dest),
            "-noappend",
            "-all-root",
            "-quiet",
            "-no-progress",
            "-no-xattrs",
            *SQUASHFS_COMP,
            "-all-time",
            str(created),
            "-mkfs-time",
            str(created),
        ],
        "mksquashfs",
        # mksquashfs refuses SOURCE_DATE_EPOCH together with -all-time/-mkfs-time.
        env={k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"},
    )


def dpkg_packages(root: Path) -> Packages:
    """The packages a rootfs's dpkg database lists as installed; none without one."""
    status = root / DPKG_STATUS
    return dpkg_installed(status.read_text()) if status.is_file() else {}


def squashfs_packages(rootfs: Path, work: Path) -> Packages:
    """`dpkg_packages` of a squashfs rootfs: its dpkg status file alone is extracted."""
    dest = work / "dpkg-status"
    run_tool(
        ["unsquashfs", "-no-progress", "-d", str(dest), str(rootfs), str(DPKG_STATUS)],
        "reading the rootfs's package database",
    )
    return dpkg_packages(dest)


def package(
    image: ImageSpec,
    arch: LxdArch,
    serial: str,
    root: Path,
    work: Path,
    out_dir: Path,
    progress: Progress,
    packages: Packages,
) -> list[tuple[BuiltFile, Path]]:
    """Metadata tarball and squashfs of a finished rootfs, moved into out_dir, and the
    manifest of its `packages`.

    Returns (BuiltFile, path) for the metadata tarball, the rootfs, then the manifest.
    """
    created = creation_time()
    progress(f"{arch}: writing {METADATA_NAME}")
    meta_tmp = work / METADATA_NAME
    cloud_init = (root / CLOUD_INIT).is_file()
    templates = HOSTNAME_TEMPLATES | (CLOUD_INIT_TEMPLATES if cloud_init else {})
    metadata_tar(meta_tmp, metadata(image, arch, serial, created, cloud_init), templates, created)
    progress(f"{arch}: writing {ROOTFS_NAME}")
    root_tmp = work / ROOTFS_NAME
    squashfs(root, root_tmp, created)
    return collect(arch, meta_tmp, root_tmp, packages, out_dir, progress)


def collect(
    arch: LxdArch,
    metadata_file: Path,
    rootfs: Path,
    packages: Packages,
    out_dir: Path,
    progress: Progress,
) -> list[tuple[BuiltFile, Path]]:
    """Move the two files into out_dir under their fixed names, write the manifest of
    `packages` beside them, and describe the three."""
    manifest = metadata_file.with_name(f".{MANIFEST_NAME}")
    manifest.write_bytes(format_manifest(packages))
    results = []
    for ftype, name, src in [
        (FileType.metadata, METADATA_NAME, metadata_file),
        (FileType.squashfs, ROOTFS_NAME, rootfs),
        (FileType.manifest, MANIFEST_NAME, manifest),
    ]:
        dest = out_dir / name
        os.replace(src, dest)
        dest.chmod(0o644)
        built = BuiltFile(
            ftype=ftype, name=name, sha256=sha256_file(dest), size=dest.stat().st_size
        )
        results.append((built, dest))
    progress(f"{arch}: built {', '.join(f'{b.name} ({b.size} B)' for b, _ in results)}")
    return results
