"""Build a bootable Debian or Ubuntu LXD container image with debootstrap.

minbase plus systemd as init, iproute2 and ping, and ifupdown with a DHCP client on
eth0 (unless the image asks for no network). The hostname comes from LXD templates
in the metadata. Downloaded packages stay in a per-arch cache directory, so a rebuild
with unchanged inputs fetches only the archive indexes. A plain function, no Temporal.
"""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from activities.builders import vm_disk
from activities.builders.base import BuildJob, Built, HostDirs
from activities.builders.errors import BuildError
from activities.builders.image_files import checked_inputs, dpkg_packages, package, stream_tool
from core.arch import LxdArch
from core.spec import ImageSpec

# What each distribution needs: its mirror and components (per release: RELEASES).
DISTROS = {
    "debian": ("http://deb.debian.org/debian", "main"),
    "ubuntu": ("http://archive.ubuntu.com/ubuntu", "main,universe"),
}
BASE_PACKAGES = ["systemd-sysv", "iproute2", "iputils-ping"]


@dataclass(frozen=True)
class Release:
    """What one release needs beyond the rest: its DHCP client (ifupdown runs it), the units
    that fail in an LXD container and are masked, and apt settings the image must carry."""

    dhcp_client: str = "isc-dhcp-client"
    masked: tuple[str, ...] = ()
    apt_conf: str = ""


# Every release not named here gets Release(). Units are masked only where they were seen
# failing the `init` check in an LXD 5.0 container.
RELEASES = {
    # Loading kernel modules is the host's business; in a container the unit fails.
    ("debian", "trixie"): Release(masked=("systemd-modules-load.service",)),
    # sid no longer has isc-dhcp-client, nor (systemd 262 without kmod) that unit, but
    # its agetty cannot open LXD's /dev/console and fails (use `lxc exec`, not `lxc
    # console`). deb.debian.org's sid Release file may carry a Valid-Until already past
    # (6 Nov 2026 on 3 Dec 2026): debootstrap ignores it, apt in the instance refuses every
    # `apt-get update`, so the image tells apt not to check.
    ("debian", "sid"): Release(
        dhcp_client="dhcpcd-base",
        masked=("console-getty.service",),
        apt_conf='Acquire::Check-Valid-Until "false";\n',
    ),
}
# Arches a host of a given machine type runs without emulation.
NATIVE = {"x86_64": {"x86_64", "i686"}, "aarch64": {"aarch64", "armv7l"}}
QEMU_NAMES = {"x86_64": "x86_64", "i686": "i386", "aarch64": "aarch64", "armv7l": "arm"}

_INTERFACES = """\
# Written by Icefloe's debootstrap builder.
auto lo
iface lo inet loopback
"""
_DHCP = """
auto eth0
iface eth0 inet dhcp
"""
# With cloud-init installed: the NoCloud seed LXD's templates write (image_files.py) is
# the data source, and ifupdown above keeps the network (cloud-init's own would be a
# second definition of eth0).
_CLOUD_CFG = """\
# Written by Icefloe's debootstrap builder.
datasource_list: [NoCloud, None]
network: {config: disabled}
# minbase generates no locales; C.UTF-8 is built into the C library (en_US.UTF-8, the
# default, fails the locale module and with it cloud-config.service).
locale: C.UTF-8
"""
# Without openssh-server, no host keys to make: cloud-init 25.1 (trixie) and 26.2 (sid) report
# each key it cannot generate as a recoverable error, and the cloud-init check fails.
_NO_SSH_KEYS = "ssh_genkeytypes: []\n"


def foreign_arch_check(arch: LxdArch, machine: str | None = None) -> str | None:
    """None if this host runs arch natively; the qemu binary used if emulated; else BuildError."""
    machine = machine or os.uname().machine
    if arch in NATIVE.get(machine, {machine}):
        return None
    qemu = f"qemu-{QEMU_NAMES[arch]}-static"
    registered = Path("/proc/sys/fs/binfmt_misc") / f"qemu-{QEMU_NAMES[arch]}"
    if shutil.which(qemu) and registered.exists():
        return qemu
    raise BuildError(
        f"cannot build {arch} on this {machine} host: it needs qemu-user-static "
        f"({qemu} in PATH and binfmt_misc entry {registered}); install qemu-user-static "
        "and binfmt-support, or build on a host of that arch"
    )


def release_of(image: ImageSpec) -> Release:
    return RELEASES.get((image.os, image.release), Release())


def _configure(root: Path, image: ImageSpec, mirror: str, components: str) -> None:
    """Make the debootstrapped tree an image: no host leftovers, network, apt sources."""
    release = release_of(image)
    etc = root / "etc"
    (etc / "hostname").write_text(f"{image.os}\n")  # LXD's template replaces it on create
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {image.os}\n")
    # debootstrap copies the build host's resolver; the image must get its own by DHCP.
    (etc / "resolv.conf").unlink(missing_ok=True)
    (etc / "resolv.conf").write_text("")
    # Empty: systemd makes a new machine-id on first boot of every instance.
    (etc / "machine-id").unlink(missing_ok=True)
    (etc / "machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    network = etc / "network"
    network.mkdir(exist_ok=True)
    (network / "interfaces").write_text(_INTERFACES + (_DHCP if image.network == "dhcp" else ""))
    # A container cannot register binfmt handlers (the host's kernel holds them): with a
    # package that ships one (python3 does) the unit would fail every boot.
    for unit in ("systemd-binfmt.service", *release.masked):
        (etc / "systemd/system" / unit).symlink_to("/dev/null")
    if release.apt_conf:
        (etc / "apt/apt.conf.d/99icefloe").write_text(
            "// Written by Icefloe's debootstrap builder.\n" + release.apt_conf
        )
    if (etc / "cloud/cloud.cfg.d").is_dir():
        sshd = (root / "usr/sbin/sshd").is_file()
        (etc / "cloud/cloud.cfg.d/99-icefloe.cfg").write_text(
            _CLOUD_CFG + ("" if sshd else _NO_SSH_KEYS)
        )
    (etc / "apt/sources.list").write_text(
        f"deb {mirror} {image.release} {components.replace(',', ' ')}\n"
    )
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (root / junk).glob("*"):
            if path.is_file():
                path.unlink()


@contextlib.contextmanager
def borrowed_cache(shared: Path) -> Iterator[Path]:
    """A build's own cache directory, holding hard links to the shared one's .debs.

    debootstrap writes a .deb it lacks in place, under its final name: builds sharing one
    directory (two definitions of one os and arch at once) would read each other's
    half-written files. What this build fetched is linked back once whole; a name another
    build linked first stays (same name, same package version).
    """
    with tempfile.TemporaryDirectory(prefix=f".{shared.name}-", dir=shared.parent) as tmp:
        own = Path(tmp)
        for deb in shared.glob("*.deb"):
            os.link(deb, own / deb.name)
        yield own
        for deb in own.glob("*.deb"):
            with contextlib.suppress(FileExistsError):
                os.link(deb, shared / deb.name)


def build_debootstrap(job: BuildJob, dirs: HostDirs) -> Built:
    """Build `lxd.tar.xz`, `rootfs.squashfs` and the manifest of the packages dpkg
    installed for one arch into out_dir (see busybox); for a `virtual-machine` image also
    `disk-kvm.img` there, from a second tree with a kernel (vm_disk). The disk is not in the
    returned list yet: the catalog and feeds do not serve VM items."""
    image, arch, serial, progress = job.spec, job.arch, job.serial, job.progress
    debian_arch = checked_inputs(arch, serial)
    if image.os not in DISTROS:
        raise BuildError(f"debootstrap builds {', '.join(DISTROS)}, not {image.os!r}")
    qemu = foreign_arch_check(arch)
    # LXD runs VMs of some arches only (not i686): the others build their containers alone.
    vm = "virtual-machine" in image.instance_types and arch in vm_disk.KERNELS
    if vm:  # before any work: a host that cannot finish the build says so at once
        vm_disk.require_tools()
    default_mirror, components = DISTROS[image.os]
    mirror = image.mirror or default_mirror
    dhcp = ["ifupdown", release_of(image).dhcp_client] if image.network == "dhcp" else []
    packages = BASE_PACKAGES + dhcp + image.packages
    cache = dirs.cache.resolve() / "debootstrap" / f"{image.os}-{debian_arch}"
    cache.mkdir(parents=True, exist_ok=True)
    out_dir = job.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    with (
        tempfile.TemporaryDirectory(prefix=".build-debootstrap-", dir=out_dir) as tmp,
        borrowed_cache(cache) as own_cache,
    ):
        work = Path(tmp)

        def debootstrap(root: Path, include: list[str]) -> None:
            via = f" via {qemu}" if qemu else ""
            progress(f"{arch}: debootstrap {image.release} into {root.name} from {mirror}{via}")
            stream_tool(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--arch={debian_arch}",
                    f"--components={components}",
                    f"--include={','.join(include)}",
                    f"--cache-dir={own_cache}",
                    image.release,
                    str(root),
                    mirror,
                ],
                f"{arch}: debootstrap",
                progress,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
            progress(f"{arch}: configuring {root.name}")
            _configure(root, image, mirror, components)

        root = work / "rootfs"
        debootstrap(root, packages)
        if vm:
            # A tree of its own: the kernel, boot loader and sshd stay out of the container.
            vm_root = work / "vm-rootfs"
            debootstrap(vm_root, packages + vm_disk.vm_packages(arch))
            vm_disk.configure_vm(vm_root, image, serial)
            vm_disk.make_disk(
                vm_root,
                vm_disk.boot_files(vm_root, arch),
                out_dir / vm_disk.DISK_NAME,
                work,
                image,
                arch,
                serial,
                progress,
            )
        installed = dpkg_packages(root)
        return package(image, arch, serial, root, work, out_dir, progress, installed)
