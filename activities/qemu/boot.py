"""Boot a `disk-kvm.img` with QEMU and run the checks that make sense there, over SSH.

The way Fedora CoreOS' kola proves its images, for hosts whose LXD cannot run VMs:
qemu-system-x86_64 with Debian's OVMF, KVM when it runs a standard guest here, else TCG;
a copy-on-write overlay, so the image itself is never written; a NoCloud seed (a vfat
volume labelled `cidata`, made with mtools: no root) giving root an SSH key; user-mode
networking with a host port forwarded to the guest's sshd; the serial console in a file.

Faults stay faults: QEMU missing, failing to start or dying, no usable accelerator, no
firmware, raise `QemuFault` (the machinery's, never a verdict). An image that does not
boot is a verdict: the `boots` check fails with the serial console's last lines.
Plain functions, no Temporal.
"""

import contextlib
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from activities.lxd_test.faults import MachineryFault
from core.catalog import AssessmentState

QEMU = "qemu-system-x86_64"
# Debian's ovmf: the firmware (read only) and the template of its variable store.
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# Seconds, sized for TCG on a 2-core host (a cloud-init bookworm image took about 2 min to
# SSH here); KVM hosts get the same ceilings, they just finish sooner.
BOOT_TIMEOUT_S = 600.0
SETTLE_TIMEOUT_S = 300.0
POWEROFF_TIMEOUT_S = 180.0
# What the serial console shows when the boot has already failed: no need to wait longer.
DEAD_ENDS = (
    "No bootable option or device was found",
    "Shell>",  # OVMF found nothing to boot and fell back to its shell
    "Kernel panic",
    "Dropping to a shell",  # the initramfs did not find the root filesystem
)
CONSOLE_LINES = 20
# systemd-coredump's journal message: a process of the image crashed.
COREDUMP_MESSAGE = "fc2e22bc6ee647b6b90729ab34a250b1"
_ANSI = re.compile(r"\x1b\[[0-9;?=]*[A-Za-z]|\x1b[()][A-Z0-9]")


class QemuFault(MachineryFault):
    """QEMU, its firmware or an accelerator failed: says nothing about the image."""

    def __init__(self, error: str) -> None:
        super().__init__("QEMU", error)


@dataclass(frozen=True)
class Outcome:
    """One check's result, as the catalog records it."""

    check: str
    state: AssessmentState
    evidence: str
    duration_s: float


@dataclass(frozen=True)
class BootReport:
    accel: str
    boot_s: float | None  # start of QEMU to SSH answering; None if it never did
    outcomes: list[Outcome]

    @property
    def passed(self) -> bool:
        ok = {AssessmentState.passed, AssessmentState.not_applicable}
        return all(o.state in ok for o in self.outcomes)


def console_tail(path: Path, lines: int = CONSOLE_LINES) -> str:
    """The serial console's last lines, without terminal escapes."""
    text = _ANSI.sub("", path.read_text(errors="replace")) if path.exists() else ""
    kept = [line.rstrip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return "\n".join(kept[-lines:]) or "(the serial console stayed silent)"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise QemuFault(f"{name} is not in PATH; run deploy/setup-host --role arch")
    return path


def _firmware() -> None:
    missing = [str(p) for p in (OVMF_CODE, OVMF_VARS) if not p.is_file()]
    if missing:
        raise QemuFault(f"no UEFI firmware: {', '.join(missing)} missing (Debian's ovmf)")


def _pflash(vars_copy: Path) -> list[str]:
    shutil.copyfile(OVMF_VARS, vars_copy)
    return [
        *("-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
        *("-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"),
    ]


def kvm_works(qemu: str, work: Path, wait_s: float = 10.0) -> bool:
    """Whether KVM runs a standard guest: OVMF alone must reach the serial console.

    A nested PVM-style KVM accepts `-accel kvm` and then stops the guest at once with
    "KVM internal error ... emulation failure"; so /dev/kvm existing proves nothing."""
    if not Path("/dev/kvm").exists():
        return False
    log = work / "kvm-probe.log"
    cmd = [qemu, "-accel", "kvm", "-machine", "q35", "-m", "256", "-nodefaults"]
    cmd += ["-display", "none", *_pflash(work / "kvm-probe-vars.fd"), "-serial", f"file:{log}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and log.stat().st_size > 0:
                return True
            time.sleep(0.2)
        return False
    finally:
        proc.kill()
        proc.wait()


def accelerator(qemu: str, work: Path) -> str:
    """kvm if it runs a standard guest, else tcg; QemuFault when QEMU offers neither."""
    try:
        offered = subprocess.run(
            [qemu, "-accel", "help"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError) as exc:
        raise QemuFault(f"{qemu} -accel help: {exc}") from None
    if "kvm" in offered and kvm_works(qemu, work):
        return "kvm"
    if "tcg" in offered:
        return "tcg"
    raise QemuFault(f"{qemu} offers neither KVM that works here nor TCG ({' '.join(offered)})")


def nocloud_seed(dest: Path, public_key: str, instance_id: str) -> None:
    """A vfat volume labelled cidata with meta-data and user-data: root gets the key."""
    user_data = (
        "#cloud-config\n"
        "disable_root: false\n"
        "users: []\n"  # no default user: its groups are not all in a minbase image
        f"ssh_authorized_keys: [{public_key.strip()}]\n"
    )
    files = {"meta-data": f"instance-id: {instance_id}\nlocal-hostname: {instance_id}\n"}
    files["user-data"] = user_data
    _run([_tool("mkfs.vfat"), "-n", "CIDATA", "-C", str(dest), "2048"], "mkfs.vfat")
    for name, text in files.items():
        src = dest.with_name(f"seed-{name}")
        src.write_text(text)
        _run([_tool("mcopy"), "-i", str(dest), str(src), f"::{name}"], "mcopy")


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise QemuFault(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Guest:
    """A booted VM reached over SSH as root."""

    def __init__(self, port: int, key: Path) -> None:
        self.base = [_tool("ssh"), "-p", str(port), "-i", str(key), "-o", "BatchMode=yes"]
        self.base += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        self.base += ["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "root@127.0.0.1"]

    def run(self, command: str, timeout_s: float = 60) -> tuple[int, str]:
        """Exit code (255: ssh itself failed) and output of a shell command in the guest."""
        try:
            done = subprocess.run(
                [*self.base, command], capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            return 255, f"no answer in {timeout_s:.0f} s: {command}"
        return done.returncode, (done.stdout + done.stderr).strip()


@contextlib.contextmanager
def running_qemu(cmd: list[str], log: Path) -> Iterator[subprocess.Popen[str]]:
    """QEMU started (QemuFault if it cannot be), killed on the way out."""
    with log.open("w") as out:
        try:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
        except OSError as exc:
            raise QemuFault(f"cannot start {cmd[0]}: {exc}") from None
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _wait_for_ssh(
    proc: subprocess.Popen[str], guest: Guest, console: Path, qemu_log: Path, timeout_s: float
) -> str | None:
    """None once SSH answers; else why not (the verdict's start). QemuFault if QEMU died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if proc.returncode != 0:
                raise QemuFault(f"QEMU exited {proc.returncode}: {qemu_log.read_text()[-500:]}")
            return "the VM powered off before SSH answered"
        seen = console_tail(console, 200)
        dead = next((d for d in DEAD_ENDS if d in seen), None)
        if dead:
            return f"the boot stopped ({dead.strip()})"
        if guest.run("true", timeout_s=20)[0] == 0:
            return None
        time.sleep(3)
    return f"SSH did not answer within {timeout_s:.0f} s"


def _checks(guest: Guest, dns_name: str) -> list[Outcome]:
    """The checks after boot, in order."""
    out: list[Outcome] = []
    since = [time.monotonic()]

    def outcome(name: str, state: AssessmentState, evidence: str) -> None:
        now = time.monotonic()
        out.append(Outcome(name, state, evidence[-4000:], now - since[0]))
        since[0] = now

    def said(name: str, ok: bool, evidence: str) -> None:
        outcome(name, AssessmentState.passed if ok else AssessmentState.failed, evidence)

    timeout = SETTLE_TIMEOUT_S
    code, text = guest.run("systemctl is-system-running --wait", timeout_s=timeout)
    if text != "running":
        _, failed = guest.run("systemctl --failed --no-legend --plain")
        text += f"; failed units: {failed or 'none'}"
    said("init", code == 0 and text == "running", text)
    code, text = guest.run("ip -4 -o addr show scope global")
    said("ipv4", code == 0 and " inet " in f" {text}", text or "no global IPv4 address")
    lookup = f"getent ahostsv4 {shlex.quote(dns_name)} | head -1"
    code, text = guest.run(f"{lookup}; cat /etc/resolv.conf")
    said("dns", code == 0 and not text.startswith("nameserver"), text or "no /etc/resolv.conf")
    code, text = guest.run("command -v cloud-init >/dev/null || echo absent")
    if text == "absent":
        outcome("cloud-init", AssessmentState.not_applicable, "no cloud-init in the image")
    else:
        code, text = guest.run("cloud-init status --wait --long", timeout_s=timeout)
        said("cloud-init", code == 0 and "status: done" in text, text)
    code, text = guest.run(
        "journalctl -b -q --no-pager -o cat | wc -l;"
        f" journalctl -b -q --no-pager -o cat MESSAGE_ID={COREDUMP_MESSAGE}"
    )
    entries, _, dumps = text.partition("\n")
    ok = code == 0 and entries.isdigit() and int(entries) > 0 and not dumps
    said(
        "journal", ok, f"{entries} entries this boot" + (f"; core dumps: {dumps}" if dumps else "")
    )
    return out


def boot_test(
    disk: Path,
    work: Path,
    *,
    accel: str | None = None,
    boot_timeout_s: float = BOOT_TIMEOUT_S,
    dns_name: str = "deb.debian.org",
    qemu: str = QEMU,
) -> BootReport:
    """Boot disk (never written: an overlay takes the writes) and run boots, init, ipv4,
    dns, cloud-init, journal and stop. `accel`: kvm or tcg; by default kvm if it works."""
    work.mkdir(parents=True, exist_ok=True)
    binary = _tool(qemu)
    _firmware()
    accel = accel or accelerator(binary, work)
    overlay = work / "overlay.qcow2"
    _run(
        [
            *(_tool("qemu-img"), "create", "-q", "-f", "qcow2", "-F", "qcow2"),
            *("-b", str(disk.resolve()), str(overlay)),
        ],
        "qemu-img create",
    )
    key = work / "id_ed25519"
    key.unlink(missing_ok=True)
    _run([_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(key)], "ssh-keygen")
    seed = work / "seed.img"
    seed.unlink(missing_ok=True)
    nocloud_seed(seed, key.with_suffix(".pub").read_text(), f"icefloe-qemu-{work.name}")
    port = _free_port()
    console, qemu_log = work / "console.log", work / "qemu.log"
    cmd = [binary, "-accel", f"{accel},thread=multi" if accel == "tcg" else accel]
    cmd += ["-machine", "q35", "-m", "1024", "-smp", "2", "-nodefaults", "-display", "none"]
    cmd += ["-no-reboot", *_pflash(work / "vars.fd"), "-serial", f"file:{console}"]
    cmd += ["-drive", f"if=virtio,format=qcow2,file={overlay}"]
    cmd += ["-drive", f"if=virtio,format=raw,readonly=on,file={seed}"]
    cmd += ["-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"]
    # e1000, without its option ROM: OVMF has no driver for it, so it tries no network boot
    # (with virtio-net, PXE and HTTP boot would keep a disk without a loader for minutes).
    cmd += ["-device", "e1000,netdev=n0,romfile="]
    cmd += ["-device", "virtio-rng-pci"]
    guest = Guest(port, key)
    outcomes: list[Outcome] = []

    def record(check: str, state: AssessmentState, evidence: str, since: float) -> None:
        outcomes.append(Outcome(check, state, evidence[-4000:], time.monotonic() - since))

    started = time.monotonic()
    with running_qemu(cmd, qemu_log) as proc:
        why = _wait_for_ssh(proc, guest, console, qemu_log, boot_timeout_s)
        boot_s = time.monotonic() - started
        if why is not None:
            evidence = f"{why}; serial console:\n{console_tail(console)}"
            record("boots", AssessmentState.failed, evidence, started)
            return BootReport(accel, None, outcomes)
        record("boots", AssessmentState.passed, f"SSH answered after {boot_s:.0f} s", started)
        outcomes += _checks(guest, dns_name)
        since = time.monotonic()
        guest.run("systemctl poweroff", timeout_s=30)  # the connection drops: no verdict
        try:
            code = proc.wait(timeout=POWEROFF_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            record("stop", AssessmentState.failed, f"still running: {console_tail(console)}", since)
        else:
            if code != 0:
                raise QemuFault(f"QEMU exited {code}: {qemu_log.read_text()[-500:]}")
            record("stop", AssessmentState.passed, "powered off cleanly", since)
    return BootReport(accel, boot_s, outcomes)
