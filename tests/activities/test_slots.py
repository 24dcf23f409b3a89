"""The worker's slot pool on its own, with real threads: first come first served, never more
holders than the limit however many wait, and a slot always given back, including when the
waiter is cancelled the way the Temporal SDK cancels a sync activity (an exception raised in
its thread) or gives up because its worker shuts down."""

import ctypes
import threading
from collections.abc import Callable
from functools import partial

import pytest

from activities.slots import SlotAbandoned, SlotPool
from harness.waiting import wait_until

pytestmark: list[pytest.MarkDecorator] = []


class Cancelled(Exception):
    """Stands for the SDK's CancelledError, raised into the waiting thread."""


def raise_in(thread: threading.Thread, exc: type[BaseException]) -> None:
    """What the SDK does to cancel a sync activity: PyThreadState_SetAsyncExc."""
    assert thread.ident is not None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc))


def holder(pool: SlotPool, body: Callable[[], object], **kw: object) -> threading.Thread:
    def run() -> None:
        with pool.held(**kw):  # type: ignore[arg-type]
            body()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_waiters_get_slots_in_arrival_order() -> None:
    pool = SlotPool(1)
    release = threading.Event()
    first = holder(pool, release.wait)
    wait_until(lambda: pool.in_use == 1, "the first holder")
    order: list[int] = []
    told: dict[int, list[int | None]] = {}
    waiters = []
    for i in range(6):
        told[i] = []
        waiters.append(holder(pool, partial(order.append, i), waits=told[i].append))
        wait_until(partial(lambda n: pool.waiting == n, i + 1), f"waiter {i} queued")
    release.set()
    for t in (first, *waiters):
        t.join(10)
    assert order == list(range(6))
    # each was told how many were ahead, again as that shrank, then that its wait ended
    for i, heard in told.items():
        ahead = [n for n in heard if n is not None]
        assert ahead[0] == i and heard[-1] is None and len(ahead) == len(heard) - 1, heard
        assert ahead == sorted(set(ahead), reverse=True), heard
    assert (pool.in_use, pool.waiting, pool.most) == (0, 0, 1)


@pytest.mark.parametrize("limit", [1, 3])
def test_never_more_holders_than_the_limit(limit: int) -> None:
    pool = SlotPool(limit)
    lock, now, most = threading.Lock(), [0], [0]
    gate = threading.Barrier(40)

    def body() -> None:
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        threading.Event().wait(0.01)
        with lock:
            now[0] -= 1

    def run() -> None:
        gate.wait()
        for _ in range(5):
            with pool.held():
                body()

    threads = [threading.Thread(target=run) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert most[0] == limit == pool.most
    assert (pool.in_use, pool.waiting) == (0, 0)


def test_a_failing_holder_gives_its_slot_back() -> None:
    pool = SlotPool(1)
    with pytest.raises(RuntimeError), pool.held():
        raise RuntimeError("build failed")
    assert pool.in_use == 0
    with pool.held():
        assert pool.in_use == 1


def test_a_waiter_cancelled_in_its_thread_leaves_the_queue() -> None:
    pool = SlotPool(1)
    release = threading.Event()
    first = holder(pool, release.wait)
    wait_until(lambda: pool.in_use == 1, "the first holder")
    outcome: list[str] = []

    def cancelled_waiter() -> None:
        try:
            with pool.held():
                outcome.append("got a slot it should not have")
        except Cancelled:
            outcome.append("cancelled")

    victim = threading.Thread(target=cancelled_waiter, daemon=True)
    victim.start()
    wait_until(lambda: pool.waiting == 1, "the victim queued")
    ran: list[str] = []
    after = holder(pool, lambda: ran.append("after"))
    wait_until(lambda: pool.waiting == 2, "the next one queued")
    raise_in(victim, Cancelled)
    victim.join(10)
    assert outcome == ["cancelled"]
    assert pool.waiting == 1  # only the one behind it
    release.set()
    for t in (first, after):
        t.join(10)
    assert ran == ["after"] and (pool.in_use, pool.waiting) == (0, 0)


def test_a_holder_cancelled_in_its_thread_gives_its_slot_back() -> None:
    pool = SlotPool(1)
    started = threading.Event()
    caught: list[BaseException] = []

    def cancelled_holder() -> None:
        try:
            with pool.held():
                started.set()
                while True:
                    threading.Event().wait(0.05)
        except Cancelled as exc:
            caught.append(exc)

    victim = threading.Thread(target=cancelled_holder, daemon=True)
    victim.start()
    started.wait(10)
    raise_in(victim, Cancelled)
    victim.join(10)
    assert caught and pool.in_use == 0


def test_a_waiter_gives_up_when_its_worker_shuts_down() -> None:
    pool = SlotPool(1)
    release, shutting_down = threading.Event(), threading.Event()
    first = holder(pool, release.wait)
    wait_until(lambda: pool.in_use == 1, "the first holder")

    def shut_down_once_queued() -> None:
        wait_until(lambda: pool.waiting == 1, "the waiter queued")
        shutting_down.set()

    threading.Thread(target=shut_down_once_queued, daemon=True).start()
    told: list[int | None] = []
    with pytest.raises(SlotAbandoned), pool.held(waits=told.append, give_up=shutting_down.is_set):
        pytest.fail("got a slot while the first still holds it")
    release.set()
    first.join(10)
    assert told == [0, None] and (pool.in_use, pool.waiting) == (0, 0)


def test_a_kept_slot_stays_taken_until_given_back() -> None:
    """A test instance deleted after the activity ended still counts against the limit."""
    pool = SlotPool(1)
    with pool.held() as keep:
        release = keep()
    assert pool.in_use == 1
    second = holder(pool, lambda: None)
    second.join(0.3)
    assert second.is_alive() and pool.waiting == 1
    release()
    second.join(5)
    assert not second.is_alive()
    assert (pool.in_use, pool.waiting, pool.most) == (0, 0, 1)
