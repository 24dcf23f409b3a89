"""The systemd units and deploy/install-host: every unit passes `systemd-analyze verify` as it
is installed, stops later than its worker's graceful shutdown, and install-host puts them, the
package and the environment file in place for each role, again and again.

`verify` needs the program ExecStart names and systemd's own units: it runs with `--root` on a
directory holding both (no systemd needs to run here; PID 1 is not systemd on these machines).
It reports a bad line as a warning and still exits 0, so any output counts as a failure."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from core.config import REPO_DIR, Settings
from tests.deploy.scripts import readable_deploy, run_script
from tests.support import Installed
from workers.control import GRACEFUL_SHUTDOWN

SOURCE = REPO_DIR / "deploy" / "systemd"
UNITS = sorted(p.name for p in SOURCE.iterdir() if p.suffix in (".service", ".timer"))
PROGRAM = "opt/icefloe/venv/bin/icefloe"
INSTALL_HOST = REPO_DIR / "deploy" / "install-host"
ROLE_UNITS = {
    "server": ["icefloe-server.service", "icefloe-gc.service", "icefloe-gc.timer"],
    "control": ["icefloe-worker-control.service"],
    "arch": ["icefloe-worker-arch@.service"],
}


def analyze(*args: str) -> subprocess.CompletedProcess:
    program = shutil.which("systemd-analyze")
    assert program, "systemd-analyze is missing: deploy/setup-host installs Debian's systemd"
    return subprocess.run(
        [program, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"SYSTEMD_LOG_LEVEL": "notice", "SYSTEMD_COLORS": "0"},
    )


def with_systemd_units(root: Path) -> Path:
    """`root` with systemd's own units (sysinit.target, ...) that every unit depends on."""
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    return root


def verify(root: Path, *units: str) -> str:
    """Everything `verify` says about the units installed under root (instances of templates
    named @x86_64); empty when they are clean."""
    paths = [f"/etc/systemd/system/{u.replace('@.', '@x86_64.')}" for u in units]
    done = analyze("verify", "--man=no", "--generators=no", f"--root={root}", *paths)
    said = done.stdout + done.stderr
    return f"exit {done.returncode}: {said}" if done.returncode else said


@pytest.fixture
def stub_root(tmp_path: Path) -> Path:
    """The units in a root where the program ExecStart names is a stub."""
    root = with_systemd_units(tmp_path)
    shutil.copytree(SOURCE, root / "etc/systemd/system", ignore=shutil.ignore_patterns("*.env"))
    program = root / PROGRAM
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    return root


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.systemd
def test_unit_verifies_clean(stub_root: Path, unit: str) -> None:
    assert verify(stub_root, unit) == ""


@pytest.mark.systemd
def test_verify_reports_a_bad_line(stub_root: Path) -> None:
    """The check above would pass vacuously if warnings went unseen."""
    unit = stub_root / "etc/systemd/system/icefloe-server.service"
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    assert "Failed to parse service restart specifier" in verify(stub_root, unit.name)
    (stub_root / PROGRAM).unlink()
    assert "is not executable" in verify(stub_root, "icefloe-worker-control.service")


def stop_timeout_s(unit: str) -> float:
    line = next(
        x for x in (SOURCE / unit).read_text().splitlines() if x.startswith("TimeoutStopSec=")
    )
    out = analyze("timespan", line.partition("=")[2]).stdout
    micros = next(x for x in out.splitlines() if x.strip().startswith("μs:"))
    return int(micros.split(":")[1]) / 1e6


@pytest.mark.systemd
def test_stop_timeouts_outlast_graceful_shutdown() -> None:
    arch_default = Settings.model_fields["graceful_shutdown_s"].default
    assert stop_timeout_s("icefloe-worker-arch@.service") > arch_default
    assert stop_timeout_s("icefloe-worker-control.service") > GRACEFUL_SHUTDOWN.total_seconds()


def test_environment_example_names_every_setting_and_sets_none() -> None:
    from core.config import env_name, variables

    text = (SOURCE / "icefloe.env").read_text()
    names = [env_name(*path) for path, _ in variables()]
    assert [n for n in names if f"\n#{n}=" not in text] == []
    assert [x for x in text.splitlines() if x.strip() and not x.startswith("#")] == []


def install_host(*args: str) -> subprocess.CompletedProcess:
    return run_script(INSTALL_HOST, *args)


@pytest.mark.root
def test_install_host_refuses_without_root_and_dry_runs_without() -> None:
    with readable_deploy() as copy:
        script = copy / "deploy/install-host"
        refused = run_script(script, "--role", "server", nobody=True)
        assert refused.returncode == 1 and "run me as root" in refused.stderr
        dry = run_script(script, "--role", "arch", "--arch", "i686", "--dry-run", nobody=True)
        assert dry.returncode == 0, dry.stderr
        assert "would install unit icefloe-worker-arch@.service" in dry.stdout
        assert "would set up the host for role arch" in dry.stdout
        assert "would start the LXD daemon" in dry.stdout
        assert "would create /opt/icefloe/venv" in dry.stdout or "exists" in dry.stdout
        server = run_script(script, "--role", "server", "--dry-run", nobody=True)
    assert server.returncode == 0, server.stderr
    # The units' UMask=0027 and StateDirectoryMode=0750: nginx reads the trees as group icefloe.
    assert (
        "would let nginx (www-data) read the trees and the store: usermod -aG icefloe www-data"
        in (server.stdout)
    )
    bad = install_host("--role", "control", "--arch", "x86_64", "--dry-run")
    assert bad.returncode == 1 and "--arch goes with --role arch only" in bad.stderr


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.systemd
def test_install_host_puts_every_role_in_place_idempotently(installed_wheel: Installed) -> None:
    """All three roles, as on a one-host deploy, under the session's root: the wheel is
    installed there already as install-host installs it (opt/icefloe/venv), so its package step
    only re-installs the wheel; everything else is done for real under that root."""
    assert sorted(u for units in ROLE_UNITS.values() for u in units) == UNITS
    root = installed_wheel.root
    if not (root / "usr/lib/systemd/system").exists():
        with_systemd_units(root)
    args = ("--root", str(root), "--wheel", str(installed_wheel.wheel))
    units = root / "etc/systemd/system"
    for role, role_units in ROLE_UNITS.items():
        done = install_host("--role", role, *args)
        assert done.returncode == 0, done.stdout + done.stderr
        for unit in role_units:
            assert (units / unit).read_bytes() == (SOURCE / unit).read_bytes()
        started = role_units[0].replace("@.", f"@{os.uname().machine}.")
        assert (units / "multi-user.target.wants" / started).is_symlink()
    assert (units / "timers.target.wants/icefloe-gc.timer").is_symlink()
    assert verify(root, *UNITS) == ""  # against the installed program this time
    env = root / "etc/icefloe/icefloe.env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600  # no icefloe group under a root

    env.write_text(env.read_text() + "ICEFLOE_TEMPORAL_ADDRESS=temporal.example:7233\n")
    for role in ROLE_UNITS:
        again = install_host("--role", role, *args)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "kept as it is" in again.stdout and "install unit" not in again.stdout
    assert env.read_text().endswith("ICEFLOE_TEMPORAL_ADDRESS=temporal.example:7233\n")
    assert installed_wheel.run("icefloe", "--help").returncode == 0
