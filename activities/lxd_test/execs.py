"""Commands inside an instance: exec with a hard timeout, and polling with a deadline.

Exec output is recorded by LXD to log files on the host (`record-output`) and read back
once the command has exited, rather than streamed over pylxd's websockets: under
concurrency those lose output now and then or break with a broken pipe (see
bench/exec_stress.py). Anything that keeps us from knowing what the command did raises
ExecFault, so a transport failure is never mistaken for the image's answer.

pylxd blocks, so these run in the activity thread pool.
"""

import contextlib
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import requests
from pylxd.exceptions import LXDAPIException, NotFound
from pylxd.models import Instance

POLL_INTERVAL = 0.1
OPERATION_WAIT_S = 5  # one long-poll of LXD's operation wait endpoint
# Beyond the command's own timeout: how long LXD may take to report the exit.
EXEC_SLACK_S = 30


class ExecFault(RuntimeError):
    """The exec machinery (LXD's exec API, its operation or its output logs) failed:
    nothing is known about what the command did."""


def describe(exc: BaseException) -> str:
    """An error as a person reads it (pylxd's exceptions have an empty repr)."""
    return f"{type(exc).__name__}: {exc}"


class ExecResult(NamedTuple):
    code: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


def run(inst: Instance, command: list[str], timeout_s: float) -> ExecResult:
    """Run a command with a hard timeout (LXD's exec has none); every byte of its output."""
    seconds = max(1, round(timeout_s))
    started = time.monotonic()
    api = inst.client.api.instances[inst.name]
    try:
        response = api.exec.post(
            json={
                "command": ["timeout", str(seconds), *command],
                "environment": {},
                "interactive": False,
                "wait-for-websocket": False,
                "record-output": True,
            }
        )
        done = _wait(inst, response.json()["operation"], started + seconds + EXEC_SLACK_S)
        logs = done["output"]
        stdout, stderr = (_read_log(api, logs[fd]) for fd in ("1", "2"))
    except (LXDAPIException, requests.RequestException, OSError, KeyError) as exc:
        raise ExecFault(f"exec of {command[0]} in {inst.name}: {describe(exc)}") from exc
    code = int(done["return"])
    if code < 0:  # LXD's -1: it lost the exit status (its forkexec on the host was killed)
        raise ExecFault(f"exec of {command[0]} in {inst.name}: LXD lost its exit status ({code})")
    # coreutils' timeout exits 124, busybox's dies of the SIGTERM it sent (143).
    timed_out = code in (124, 143) and time.monotonic() - started >= seconds
    return ExecResult(code, stdout, stderr, timed_out)


def _wait(inst: Instance, operation: str, deadline: float) -> dict[str, Any]:
    """The exec operation's metadata once it has finished (return code, output logs)."""
    op = inst.client.api.operations[operation.rsplit("/", 1)[-1]]
    while True:
        body = op.wait.get(params={"timeout": OPERATION_WAIT_S}).json()["metadata"]
        if body["status"] == "Success" or _ran(body):
            return body["metadata"]
        if body["status"] in ("Failure", "Cancelled"):
            raise ExecFault(f"LXD exec operation {body['status'].lower()}: {body.get('err')}")
        if time.monotonic() > deadline:
            raise ExecFault("LXD did not report the exec's exit in time")


def _ran(body: dict[str, Any]) -> bool:
    """LXD fails an exec whose command exits 126 or 127 ("Command not executable", "Command
    not found") yet records its exit and output: the command ran (inside `timeout`, the
    shell or command it starts reported that), so that exit is its answer, not a fault."""
    meta = body.get("metadata") or {}
    return body["status"] == "Failure" and meta.get("return") in (126, 127) and "output" in meta


def _read_log(api: Any, path: str) -> str:
    """One recorded output stream, then its log file is deleted (it would stay until the
    instance goes)."""
    log = api.logs[path.rsplit("/", 1)[-1]]
    data = log.get(is_api=False).content  # raw bytes: output that looks like JSON stays output
    with contextlib.suppress(NotFound):
        log.delete()
    return data.decode("utf-8", errors="replace")


def wait_until(probe: Callable[[], tuple[bool, str]], timeout_s: float) -> tuple[bool, str]:
    """Poll a probe until it holds or the deadline passes; returns the last evidence."""
    deadline = time.monotonic() + timeout_s
    while True:
        ok, evidence = probe()
        if ok or time.monotonic() > deadline:
            return ok, evidence
        time.sleep(POLL_INTERVAL)
