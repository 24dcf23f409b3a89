"""Waiting for something to happen: the one sync and the one async poll. A timeout is a
ceiling for a loaded machine, never a measure."""

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None], what: str, timeout_s: float = 120, every_s: float = 0.05
) -> T:
    """Call `condition` until it returns something true, and return that; fail saying `what`
    did not happen."""
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        assert time.monotonic() < deadline, f"not after {timeout_s:g} s: {what}"
        time.sleep(every_s)
    return found


@overload
async def until(
    condition: Callable[[], Awaitable[T | None]],
    what: str,
    timeout_s: float = ...,
    every_s: float = ...,
) -> T: ...


@overload
async def until(
    condition: Callable[[], T | None], what: str, timeout_s: float = ..., every_s: float = ...
) -> T: ...


async def until(
    condition: Callable[[], object],
    what: str,
    timeout_s: float = 120,
    every_s: float = 0.05,
) -> object:
    """`wait_until` for a coroutine: `condition` may be a plain call (it must not block; wrap
    a blocking one as `lambda: asyncio.to_thread(probe)`) or return an awaitable."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = condition()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        assert time.monotonic() < deadline, f"not after {timeout_s:g} s: {what}"
        await asyncio.sleep(every_s)
