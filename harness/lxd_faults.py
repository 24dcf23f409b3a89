"""Real faults of an LXD instance for the fault tests: its exec's host process killed (once,
or every time it appears), it frozen, its init stopped so it ignores a clean stop. Each acts
on LXD's own processes."""

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pylxd


def forkexecs(project: str, instance: str, command: str) -> list[int]:
    """Host pids of LXD's `forkexec` processes running `command` in the instance (LXD names
    the container `<project>_<instance>` on its command line)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or it exited meanwhile
            continue
        words = [a.decode(errors="replace") for a in argv]
        mine = "forkexec" in words[:2] and f"{project}_{instance}" in words
        if mine and command in " ".join(words):
            found.append(int(proc.name))
    return found


def kill_forkexec(project: str, instance: str, command: str) -> int:
    """SIGKILL the host side of the instance's exec of `command`; how many were killed."""
    killed = 0
    for pid in forkexecs(project, instance, command):
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


@contextlib.contextmanager
def execs_killed(
    project: str, instance: str, command: str, poll_s: float = 0.1
) -> Iterator[list[int]]:
    """Until the block ends, kill the host side of every exec of `command` in the instance as
    it appears (a host whose exec machinery keeps failing); yields how many each pass killed."""
    kills: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(poll_s):
            if n := kill_forkexec(project, instance, command):
                kills.append(n)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield kills
    finally:
        done.set()
        watcher.join()


def stop_init(client: pylxd.Client, instance: str) -> int:
    """SIGSTOP the instance's init from the host: it ignores the clean stop LXD asks for
    (SIGPWR stays pending), as an init that never halts does. A forced stop still kills it."""
    pid = client.instances.get(instance).state().pid
    os.kill(pid, signal.SIGSTOP)
    return pid
