"""Processes a test or a benchmark starts: a free loopback port, a start with its output in a
log, a wait until it listens, a stop by its PID, and variables set for a while."""

import os
import signal
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from harness.waiting import wait_until

LOOPBACK = "127.0.0.1"


@contextmanager
def environ(values: Mapping[str, str]) -> Iterator[None]:
    """These variables while the block runs (settings are read when made, children inherit them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def start(
    argv: Sequence[str | Path],
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen:
    """`argv` in a process of its own, stdout and stderr appended to `log`."""
    with log.open("a") as out:
        return subprocess.Popen(
            [str(a) for a in argv],
            cwd=cwd,
            env=os.environ | (env or {}),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def alive(proc: subprocess.Popen, log: Path | None = None) -> None:
    """Fail with the process's log once it has exited."""
    if proc.poll() is not None:
        said = log.read_text()[-3000:] if log and log.exists() else ""
        raise AssertionError(f"{proc.args!r} exited {proc.returncode}: {said}")


def listening(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=1).close()
    except OSError:
        return False
    return True


def wait_for_port(
    port: int, proc: subprocess.Popen, log: Path | None = None, timeout_s: float = 60
) -> None:
    """Until `proc` listens on `port`; its log if it exits first."""

    def up() -> bool:
        alive(proc, log)
        return listening(port)

    wait_until(up, f"{proc.args!r} listening on {port}", timeout_s, every_s=0.1)


def stop(proc: subprocess.Popen, timeout_s: float = 30, how: int = signal.SIGTERM) -> None:
    """`how` (SIGTERM) to a process we started, by its PID; SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(how)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
