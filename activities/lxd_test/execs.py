"""Commands inside an instance: exec with a hard timeout, and polling with a deadline.

pylxd blocks, so these run in the activity thread pool.
"""

import time
from collections.abc import Callable
from typing import NamedTuple

from pylxd.models import Instance

POLL_INTERVAL = 0.1


class ExecResult(NamedTuple):
    code: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


def run(inst: Instance, command: list[str], timeout_s: float) -> ExecResult:
    """Run a command with a hard timeout (pylxd has none)."""
    seconds = max(1, round(timeout_s))
    started = time.monotonic()
    result = inst.execute(["timeout", str(seconds), *command])
    # coreutils' timeout exits 124, busybox's dies of the SIGTERM it sent (143).
    timed_out = result.exit_code in (124, 143) and time.monotonic() - started >= seconds
    return ExecResult(result.exit_code, result.stdout, result.stderr, timed_out)


def wait_until(probe: Callable[[], tuple[bool, str]], timeout_s: float) -> tuple[bool, str]:
    """Poll a probe until it holds or the deadline passes; returns the last evidence."""
    deadline = time.monotonic() + timeout_s
    while True:
        ok, evidence = probe()
        if ok or time.monotonic() > deadline:
            return ok, evidence
        time.sleep(POLL_INTERVAL)
