"""Heartbeats for sync activities whose steps block for longer than the heartbeat timeout.

A side thread repeats the latest progress message, so a long exec or mksquashfs never
looks like a dead worker. The SDK raises cancellation in the activity thread, but only
once that thread runs Python again: a thread blocked in a socket read (pylxd waiting for
an exec) would only see it when the call returns, so the side thread also runs an
`on_cancel` hook that makes the blocking call return.
"""

import contextvars
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from temporalio import activity

# The side thread beats independently of the blocking work, so it may beat often and the
# heartbeat timeout (workflows/options.py) may be a few beats long: a dead worker is noticed
# within seconds, a busy one never looks dead. Arch workers flush each beat to the server.
BEAT_EVERY_S = 2.0


@contextmanager
def heartbeating(
    every_s: float = BEAT_EVERY_S, on_cancel: Callable[[], None] = lambda: None
) -> Iterator[Callable[[str], None]]:
    """Yield a progress function: it heartbeats and logs; the side thread re-sends the last one
    and calls on_cancel once when the activity is cancelled."""
    last = ["started"]
    done = threading.Event()
    context = contextvars.copy_context()  # the activity context, so heartbeat() finds its task

    def repeat() -> None:
        while not done.wait(every_s):
            context.run(activity.heartbeat, last[0])
            if context.run(activity.is_cancelled):
                on_cancel()
                return

    def progress(message: str) -> None:
        last[0] = message
        activity.heartbeat(message)
        activity.logger.info(message)

    thread = threading.Thread(target=repeat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield progress
    finally:
        done.set()
        thread.join()


P = ParamSpec("P")
R = TypeVar("R")


def beating(fn: Callable[P, R]) -> Callable[P, R]:
    """A short sync activity that heartbeats while it runs: a worker that dies in the middle
    is noticed at the heartbeat timeout, not the start-to-close one."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with heartbeating():
            return fn(*args, **kwargs)

    return run
