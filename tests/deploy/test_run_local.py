"""The README's main command, `deploy/run-local` (`icefloe up`, deploy/stack.py), for real:
its own state directory and free ports, the host's LXD, the sample image to active."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlmodel import Session, select

from core.config import REPO_DIR, Settings
from harness.processes import free_port
from harness.servers import DEBS
from server_api.db import make_engine
from server_api.models import Version

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]

# A bound on a hung stack, not a figure (the sample takes well under a minute), below
# pytest's timeout so that a hung stack is still stopped with Ctrl-C.
CEILING_S = 400
RUNNING = "stack running; Ctrl-C stops everything it started"


def stack_env(state: Path, **extra: str) -> dict[str, str]:
    """`icefloe up` on free ports with its state in `state` (the coordinator's stack may hold
    7233, 8233 and 8443); the busybox debs deploy/setup-host downloaded."""
    temporal, ui, server = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICEFLOE_")}
    return env | {
        "ICEFLOE_STATE_DIR": str(state),
        "ICEFLOE_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal}",
        "ICEFLOE_TEMPORAL_UI_URL": f"http://127.0.0.1:{ui}",
        "ICEFLOE_SERVER_PORT": str(server),
        "ICEFLOE_SERVER_URL": f"https://127.0.0.1:{server}",
        "ICEFLOE_DEB_DIR": str(DEBS),
        "ICEFLOE_LOG_LEVEL": "WARNING",
        **extra,
    }


class Up:
    """`icefloe up` in a process of its own, its output collected by a thread; leaving the
    block stops it with Ctrl-C if it still runs."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.lines: list[str] = []
        self.running = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", *args],
            cwd=REPO_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith(RUNNING):
                self.running.set()

    def __enter__(self) -> "Up":
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc.poll() is None:
            self.interrupt()
        self._reader.join(10)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=120)


def once(env: dict[str, str]) -> tuple[int, str]:
    """`icefloe up --once`: its exit code and output; failed if it has not ended by the ceiling."""
    with Up(env, "--once") as up:
        try:
            code = up.proc.wait(timeout=CEILING_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"icefloe up --once did not end within {CEILING_S}s:\n{up.output}")
    return code, up.output


def stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of a live process, None once it is gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid, _pgrp, session = text.rpartition(")")[2].split()[:4]
    return None if state == "Z" else (int(ppid), int(session))


def all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def started_by(pid: int) -> set[int]:
    """What a stack runs: its children (each a session leader) and everything in their sessions."""
    found = {p: s for p in all_pids() if (s := stat(p)) is not None}
    children = {p for p, (ppid, _) in found.items() if ppid == pid}
    return children | {p for p, (_, session) in found.items() if session in children}


def versions(state: Path) -> dict[str, str]:
    """Serial -> state of every version in the stack's catalog."""
    engine = make_engine(Settings(state_dir=state).server.db_url)
    with Session(engine) as session:
        found = {v.serial: v.state.value for v in session.exec(select(Version))}
    engine.dispose()
    return found


def test_once_takes_the_sample_to_active_and_a_second_run_reuses_the_state_and_builds_nothing(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    code, out = once(stack_env(state))
    assert code == 0, out
    assert "is active" in out, out
    cert = (state / "tls" / "server.crt").read_bytes()
    token = (state / "publisher.token").read_text()
    [first] = versions(state)

    code, out = once(stack_env(state))  # other free ports, the same state
    assert code == 0, out
    assert (state / "tls" / "server.crt").read_bytes() == cert
    assert (state / "publisher.token").read_text() == token
    # Nothing changed since the first run's version: the second builds nothing.
    assert f"unchanged since {first}" in out and f"version {first} of" in out, out
    assert versions(state) == {first: "active"}


def test_once_exits_non_zero_when_the_sample_does_not_reach_active(tmp_path: Path) -> None:
    """A definition whose check really fails in the instance: the version stays in testing
    and `--once` says so and exits 1 instead of waiting days for a retry."""
    images = tmp_path / "images"
    images.mkdir()
    sample = (REPO_DIR / "images" / "busybox.yaml").read_text()
    failing = sample.replace("variant: default", "variant: failing").replace(
        "checks: [default]", "checks: [boots, {name: always-fails, command: 'false'}]"
    )
    (images / "busybox.yaml").write_text(failing)
    code, out = once(stack_env(tmp_path / "state", ICEFLOE_IMAGES_DIR=str(images)))
    assert code == 1, out
    assert "always-fails failed" in out, out
    assert set(versions(tmp_path / "state").values()) == {"testing"}, out


def test_ctrl_c_stops_every_process_it_started(tmp_path: Path) -> None:
    with Up(stack_env(tmp_path / "state")) as up:
        assert up.running.wait(CEILING_S), up.output
        started = started_by(up.proc.pid)
        assert len(started) >= 4, started  # Temporal, the server, the control and arch workers
        code = up.interrupt()
    assert code == 0, up.output
    assert "stopping" in up.output
    assert [pid for pid in started if stat(pid) is not None] == []
