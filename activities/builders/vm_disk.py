"""Turn a Debian rootfs tree into the disk image LXD and Incus boot as a VM, `disk-kvm.img`.

A qcow2 disk with a GPT: an EFI system partition holding systemd-boot (Debian's
`systemd-boot-efi`, at the removable-media path OVMF boots without NVRAM entries), its
entry and the release's kernel and initramfs; then the root filesystem, ext4. No loop
mount and no root-only trick: `mkfs.vfat --offset` and mtools write the ESP, `mkfs.ext4 -E
offset= -d` copies the tree into its partition, sfdisk writes the table into a plain file
and qemu-img converts it. The kernel command line names the first NIC eth0
(`net.ifnames=0`, so ifupdown's DHCP on eth0 applies) and puts the console on ttyS0.
UUIDs come from the image and serial, so a rebuild gives the same ones.

LXD's agent units are installed as lxd-imagebuilder installs them (Incus' are not yet).
Not yet: a kernel upgraded inside the VM is not copied to the ESP (the entry keeps the
build's kernel).
"""

import os
import shutil
import uuid
from pathlib import Path

from activities.builders.base import Progress
from activities.builders.errors import BuildError
from activities.builders.image_files import SET_UP, run_tool
from core.arch import LxdArch
from core.spec import ImageSpec

DISK_NAME = "disk-kvm.img"
# The tools a VM build runs, checked before any work so a host lacking one fails at once.
TOOLS = ("mkfs.ext4", "mkfs.vfat", "mmd", "mcopy", "sfdisk", "qemu-img")
# Per arch: the release's kernel package and systemd-boot's EFI name for it.
KERNELS = {"x86_64": ("linux-image-amd64", "x64"), "aarch64": ("linux-image-arm64", "aa64")}
# What a VM needs beyond the container's packages: kernel, initramfs, boot loader, sshd
# (the QEMU boot test logs in with the NoCloud seed's key).
VM_PACKAGES = ("initramfs-tools", "systemd-boot-efi", "openssh-server")
MIB = 1 << 20
DISK_SIZE = 4 << 30  # virtual size; LXD grows the disk to the instance's root size
ESP_SIZE = 160 * MIB
ESP_START = 1 * MIB
# GPT type GUIDs: EFI system partition; Linux root (x86-64 / aarch64, discoverable).
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_TYPES = {
    "x86_64": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
    "aarch64": "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
}
CMDLINE = "ro console=tty0 console=ttyS0,115200n8 net.ifnames=0"
# sshd's host keys are made on each VM's first boot, never shipped in the image.
_SSH_KEYS_DROP_IN = """\
# Written by Icefloe's VM disk builder: host keys are made on first boot.
[Service]
ExecStartPre=/usr/bin/ssh-keygen -A
"""


# LXD's agent, as lxd-imagebuilder installs it (generators/lxd-agent.go): udev starts the unit
# when LXD's virtio port is there (so never under plain QEMU); its set-up script copies the
# agent LXD ships on the config drive (9p, virtiofs or a CD-ROM) into /run/lxd_agent.
LXD_AGENT_SETUP = """\
#!/bin/sh
# Written by Icefloe's VM disk builder, after lxd-imagebuilder's.
set -eu
PREFIX="/run/lxd_agent"
CDROM="/dev/disk/by-id/scsi-0QEMU_QEMU_CD-ROM_lxd_agent"

mount_virtiofs() {
    mount -t virtiofs config "${PREFIX}.mnt" >/dev/null 2>&1
}

mount_9p() {
    modprobe 9pnet_virtio >/dev/null 2>&1 || true
    mount -t 9p config "${PREFIX}.mnt" -o access=0,trans=virtio,size=1048576 >/dev/null 2>&1
}

mount_cdrom() {
    mount "${CDROM}" "${PREFIX}.mnt" >/dev/null 2>&1
}

fail() {
    if [ -x "${PREFIX}/lxd-agent" ]; then
        echo "${1}, re-using existing agent"
        exit 0
    fi
    umount -l "${PREFIX}" >/dev/null 2>&1 || true
    eject "${CDROM}" >/dev/null 2>&1 || true
    rmdir "${PREFIX}" >/dev/null 2>&1 || true
    echo "${1}, failing"
    exit 1
}

mkdir -p "${PREFIX}.mnt"
mount_9p || mount_virtiofs || mount_cdrom || fail "Couldn't mount 9p or cdrom"
umount -l "${PREFIX}" >/dev/null 2>&1 || true
mkdir -p "${PREFIX}"
mount -t tmpfs tmpfs "${PREFIX}" -o mode=0700,size=50M
cp -Ra "${PREFIX}.mnt/"* "${PREFIX}"
umount "${PREFIX}.mnt"
rmdir "${PREFIX}.mnt"
eject "${CDROM}" >/dev/null 2>&1 || true
chown -R root:root "${PREFIX}"
exit 0
"""
LXD_AGENT_UNIT = """\
[Unit]
Description=LXD - agent
Documentation=https://documentation.ubuntu.com/lxd
Before=multi-user.target cloud-init.target cloud-init.service cloud-init-local.service
DefaultDependencies=no

[Service]
Type=notify
WorkingDirectory=-/run/lxd_agent
ExecStartPre=/usr/lib/systemd/lxd-agent-setup
ExecStart=/run/lxd_agent/lxd-agent
Restart=on-failure
RestartSec=5s
StartLimitInterval=60
StartLimitBurst=10
"""
LXD_AGENT_RULES = "".join(
    f'SYMLINK=="virtio-ports/{port}", TAG+="systemd", ENV{{SYSTEMD_WANTS}}+="lxd-agent.service"\n'
    for port in ("com.canonical.lxd", "org.linuxcontainers.lxd")  # the second: older LXD
)


def install_lxd_agent(root: Path) -> None:
    """The units that mount LXD's config drive and start its agent, in the VM tree."""
    for rel, text, mode in (
        ("usr/lib/systemd/system/lxd-agent.service", LXD_AGENT_UNIT, 0o644),
        ("usr/lib/systemd/lxd-agent-setup", LXD_AGENT_SETUP, 0o755),
        ("usr/lib/udev/rules.d/99-lxd-agent.rules", LXD_AGENT_RULES, 0o644),
    ):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)


def vm_packages(arch: LxdArch) -> list[str]:
    """The packages a VM tree of this arch (one of KERNELS) adds."""
    return [KERNELS[arch][0], *VM_PACKAGES]


def require_tools() -> None:
    """BuildError naming every tool a VM build needs and this host lacks."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise BuildError(f"a VM image needs {', '.join(missing)}, not installed here; {SET_UP}")


def _uuids(image: ImageSpec, serial: str) -> dict[str, str]:
    base = uuid.uuid5(uuid.NAMESPACE_URL, f"icefloe:{image.name}:{serial}")
    return {k: str(uuid.uuid5(base, k)) for k in ("disk", "esp", "root", "fs")}


def _esp_volume_id(ids: dict[str, str]) -> str:
    return ids["fs"].replace("-", "")[:8].upper()


def configure_vm(root: Path, image: ImageSpec, serial: str) -> None:
    """What the VM tree needs beyond the container's: fstab, ESP mount point, sshd keys
    made on first boot, LXD's agent units."""
    ids = _uuids(image, serial)
    vol = _esp_volume_id(ids)
    (root / "etc/fstab").write_text(
        "# Written by Icefloe's VM disk builder.\n"
        f"UUID={ids['root']} / ext4 errors=remount-ro 0 1\n"
        f"UUID={vol[:4]}-{vol[4:]} /boot/efi vfat umask=0077,nofail 0 0\n"
    )
    (root / "boot/efi").mkdir(parents=True, exist_ok=True)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    if (root / "usr/sbin/sshd").is_file():
        drop_in = root / "etc/systemd/system/ssh.service.d"
        drop_in.mkdir(parents=True, exist_ok=True)
        (drop_in / "icefloe-host-keys.conf").write_text(_SSH_KEYS_DROP_IN)
    install_lxd_agent(root)


def _in_tree(root: Path, link: str) -> Path:
    """What the tree's /vmlinuz (or /initrd.img) symlink points at, inside the tree."""
    path = root / link
    return root / os.readlink(path).lstrip("/") if path.is_symlink() else path


def boot_files(root: Path, arch: LxdArch) -> dict[str, Path]:
    """The ESP's files, by path on it: systemd-boot, its config, kernel and initramfs."""
    efi = root / f"usr/lib/systemd/boot/efi/systemd-boot{KERNELS[arch][1]}.efi"
    kernel, initrd = _in_tree(root, "vmlinuz"), _in_tree(root, "initrd.img")
    missing = [str(p.relative_to(root)) for p in (efi, kernel, initrd) if not p.is_file()]
    if missing:
        raise BuildError(f"the VM tree lacks {', '.join(missing)}: no kernel or boot loader")
    return {
        f"EFI/BOOT/BOOT{KERNELS[arch][1].upper()}.EFI": efi,
        "vmlinuz": kernel,
        "initrd.img": initrd,
    }


def make_disk(
    root: Path,
    esp_files: dict[str, Path],
    dest: Path,
    work: Path,
    image: ImageSpec,
    arch: LxdArch,
    serial: str,
    progress: Progress,
) -> None:
    """Write the qcow2 disk of `root` with `esp_files` on its ESP (a systemd-boot entry is
    added when there is a loader) to dest. Any tree will do: a disk without a loader is how
    the boot test's refusal is proved."""
    require_tools()
    ids = _uuids(image, serial)
    raw = work / "disk.raw"
    with raw.open("wb") as f:
        f.truncate(DISK_SIZE)
    root_start = ESP_START + ESP_SIZE
    root_size = DISK_SIZE - root_start - MIB  # the backup GPT stays clear
    progress(f"{arch}: partitioning {DISK_NAME}")
    run_tool(
        ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(raw)],
        "sfdisk",
        input="label: gpt\n"
        f"label-id: {ids['disk']}\n"
        f"start={ESP_START // 512}, size={ESP_SIZE // 512}, type={ESP_TYPE}, "
        f'uuid={ids["esp"]}, name="EFI System"\n'
        f"start={root_start // 512}, size={root_size // 512}, type={ROOT_TYPES[arch]}, "
        f'uuid={ids["root"]}, name="root"\n',
    )
    esp = f"{raw}@@{ESP_START}"
    run_tool(
        [
            # One sector a cluster: enough clusters for FAT32, which mtools insists on.
            *("mkfs.vfat", "-F", "32", "-s", "1", "-n", "ESP", "-i", _esp_volume_id(ids)),
            *("--offset", str(ESP_START // 512), str(raw), str(ESP_SIZE // 1024)),
        ],
        "mkfs.vfat",
    )
    files = dict(esp_files)
    entries = {}
    if any(p.startswith("EFI/BOOT/") for p in files):
        entries["loader/loader.conf"] = "default debian.conf\ntimeout 0\n"
        entries["loader/entries/debian.conf"] = (
            f"title {image.release_title or image.os + ' ' + image.release}\n"
            "linux /vmlinuz\ninitrd /initrd.img\n"
            f"options root=UUID={ids['root']} {CMDLINE}\n"
        )
    for name, text in entries.items():
        path = work / "esp-text" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        files[name] = path
    dirs = sorted({str(Path(p).parents[i]) for p in files for i in range(len(Path(p).parts) - 1)})
    if dirs:
        run_tool(["mmd", "-i", esp, *(f"::{d}" for d in dirs)], "mmd")
    for name, src in files.items():
        run_tool(["mcopy", "-i", esp, str(src), f"::{name}"], f"mcopy {name}")
    progress(f"{arch}: mkfs.ext4 of the root filesystem")
    run_tool(
        [
            *("mkfs.ext4", "-q", "-F", "-L", "root", "-U", ids["root"], "-d", str(root)),
            *("-E", f"offset={root_start}", str(raw), f"{root_size // 1024}k"),
        ],
        "mkfs.ext4",
    )
    # Compressed: a minimal bookworm VM is 300 MiB so, 780 MiB not, for 20 s of one core.
    progress(f"{arch}: converting to compressed qcow2")
    run_tool(
        ["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(raw), str(dest)], "qemu-img"
    )
    raw.unlink()
