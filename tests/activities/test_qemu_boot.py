"""VM disk images proved by QEMU: a real Debian 12 VM image built by debootstrap from
deb.debian.org and booted with Debian's QEMU (TCG here: this host's nested KVM cannot run a
standard guest) and OVMF, every check passing over SSH; a disk whose ESP has no boot loader
failing `boots` with the serial console as evidence; QEMU absent, a machinery fault."""

import hashlib
import os
import re
import time
from pathlib import Path

import pytest

from activities.builders import debootstrap, vm_disk
from activities.builders.base import BuildJob, HostDirs
from activities.builders.debootstrap import build_debootstrap
from activities.builders.errors import BuildError
from activities.qemu import boot
from activities.qemu.boot import QemuFault, boot_test
from core.catalog import AssessmentState
from core.config import Settings
from core.spec import ImageSpec

# A minimal VM image: cloud-init for the NoCloud seed's SSH key (the virtual package
# python3-cryptography needs is named, debootstrap does not resolve those).
SPEC = ImageSpec(
    os="debian",
    release="bookworm",
    variant="vm-test",
    arches=["x86_64"],
    builder="debootstrap",
    instance_types=["container", "virtual-machine"],
    packages=["cloud-init", "python3-cffi-backend"],
)
SERIAL = "20261204-000000"


def vm_image(out: Path) -> Path:
    """The VM image of SPEC, built once per state dir and code of the builders (debootstrap's
    .debs cached there too): the cache key is the spec and the builders' source."""
    state = Settings().state_dir.resolve()
    key = hashlib.sha256(SPEC.model_dump_json().encode())
    for module in (debootstrap, vm_disk):
        key.update(Path(str(module.__file__)).read_bytes())
    cached = state / "cache" / "vm-test" / key.hexdigest()[:16]
    disk = cached / vm_disk.DISK_NAME
    if not disk.is_file():
        started = time.monotonic()
        build_debootstrap(
            BuildJob(SPEC, "x86_64", SERIAL, out),
            HostDirs(debs=state / "debs", cache=state / "cache"),
        )
        took = time.monotonic() - started
        cached.mkdir(parents=True, exist_ok=True)
        os.replace(out / vm_disk.DISK_NAME, disk)
        print(f"\nVM image built in {took:.0f} s (with the container files)")
    print(f"\n{vm_disk.DISK_NAME}: {disk.stat().st_size / 2**20:.0f} MiB")
    return disk


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.root  # debootstrap
@pytest.mark.timeout(2400)
def test_a_debian_vm_image_boots_under_qemu_and_passes_every_check(tmp_path: Path) -> None:
    disk = vm_image(tmp_path / "out")
    before = disk.stat().st_mtime_ns, hashlib.sha256(disk.read_bytes()).hexdigest()
    report = boot_test(disk, tmp_path / "boot")
    print(f"\nQEMU ({report.accel}): SSH after {report.boot_s} s")
    for o in report.outcomes:
        print(f"  {o.check}: {o.state} ({o.duration_s:.1f} s) {o.evidence[:150]!r}")
    assert [o.check for o in report.outcomes] == [
        *("boots", "init", "ipv4", "dns", "cloud-init", "journal", "stop"),
    ]
    assert report.passed, report.outcomes
    assert "10.0.2." in next(o.evidence for o in report.outcomes if o.check == "ipv4")
    assert (disk.stat().st_mtime_ns, hashlib.sha256(disk.read_bytes()).hexdigest()) == before


def loaderless_disk(tmp_path: Path) -> Path:
    """A disk of a tiny tree whose ESP is empty: no boot loader, no kernel."""
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/os-release").write_text("ID=debian\n")
    disk = tmp_path / vm_disk.DISK_NAME
    vm_disk.make_disk(tree, {}, disk, tmp_path, SPEC, "x86_64", SERIAL, lambda _: None)
    return disk


@pytest.mark.qemu
def test_a_disk_whose_esp_has_no_loader_fails_boots_with_the_console(tmp_path: Path) -> None:
    disk = loaderless_disk(tmp_path)
    report = boot_test(disk, tmp_path / "boot", accel="tcg", boot_timeout_s=300)
    [boots] = report.outcomes
    assert (boots.check, boots.state, report.boot_s) == ("boots", AssessmentState.failed, None)
    assert "the boot stopped" in boots.evidence
    assert "serial console:\nBdsDxe: failed to load Boot0001" in boots.evidence


def test_without_qemu_a_boot_test_is_a_machinery_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(QemuFault, match=r"^QEMU: qemu-system-x86_64 is not in PATH"):
        boot_test(tmp_path / "disk-kvm.img", tmp_path / "boot")


@pytest.mark.qemu
def test_qemu_failing_to_start_is_a_machinery_fault(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / boot.QEMU
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'qemu-system-x86_64: -drive: Could not open' >&2\nexit 1\n")
    fake.chmod(0o755)
    disk = loaderless_disk(tmp_path)
    with pytest.raises(QemuFault, match=r"^QEMU: QEMU exited 1: .*Could not open"):
        boot_test(disk, tmp_path / "boot", accel="tcg", qemu=str(fake))


def test_a_vm_build_without_its_tools_fails_at_once_naming_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    dirs = HostDirs(debs=tmp_path, cache=tmp_path / "cache")
    started = time.monotonic()
    missing = "needs mkfs.ext4, mkfs.vfat, mmd, mcopy, sfdisk, qemu-img, not installed here"
    with pytest.raises(BuildError, match=re.escape(missing)):
        build_debootstrap(BuildJob(SPEC, "x86_64", SERIAL, tmp_path / "out"), dirs)
    assert time.monotonic() - started < 1
    assert not (tmp_path / "cache").exists(), "nothing was started"


def test_an_arch_without_lxd_vms_builds_its_container_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """i686 has no LXD VMs: its build of a VM definition asks for no VM tool (here it gets
    as far as debootstrap, which this PATH lacks too)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    dirs = HostDirs(debs=tmp_path, cache=tmp_path / "cache")
    with pytest.raises(BuildError, match=r"^i686: debootstrap: debootstrap is not installed"):
        build_debootstrap(BuildJob(SPEC, "i686", SERIAL, tmp_path / "out"), dirs)
