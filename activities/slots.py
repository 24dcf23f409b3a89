"""The arch worker's slots: at most N builds and M test instances at once, whatever the number
of pipelines. An activity starts at once (so Temporal's "no worker polls" detection is not
fooled), then waits here for a slot, heartbeating and telling its pipeline how many are ahead.

Slots are handed over in arrival order on release, so a waiter never loses its turn to a
later one and one image cannot starve the others. Activities are sync, in threads: the SDK
cancels one by raising in its thread, so the bookkeeping runs shielded and a slot is always
given back (finally), whether the work ends, fails, is cancelled or the worker shuts down.
"""

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError, CancelledError

from core.arch import LxdArch
from core.slots import SLOT_WAIT_SIGNAL, SlotKind, SlotWait

log = logging.getLogger(__name__)
# How often a waiter looks again: the SDK's cancellation reaches a thread only between
# bytecodes, so no wait blocks longer than this.
LOOK_EVERY_S = 0.5
SIGNAL_TIMEOUT_S = 5.0


class SlotAbandoned(Exception):
    """The waiter gave up (its worker shuts down) before a slot was free."""


Release = Callable[[], None]


class _Ticket:
    __slots__ = ("granted", "kept")

    def __init__(self) -> None:
        self.granted = False
        self.kept = False  # the holder took the slot past the block: it releases it itself


class SlotPool:
    """At most `limit` holders at once; waiters get slots first come, first served."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.most = 0  # the most holders there ever were at once
        self._in_use = 0
        self._queue: deque[_Ticket] = deque()
        self._cond = threading.Condition()

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @contextmanager
    def held(
        self,
        waits: Callable[[int | None], None] = lambda _: None,
        give_up: Callable[[], bool] = lambda: False,
        shield: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> Iterator[Callable[[], Release]]:
        """Hold a slot for the block. While queued, `waits(ahead)` is called when the number
        ahead changes, then `waits(None)` once the wait ends; `give_up()` true ends the wait
        with SlotAbandoned; `shield` defers a cancellation raised in this thread.
        The block gets `keep`: calling it keeps the slot past the block and returns the
        function that gives it back (for work the holder finishes in the background)."""
        ticket = _Ticket()

        def keep() -> Release:
            ticket.kept = True
            return lambda: self._leave(ticket, kept=True)

        try:
            with shield():
                self._arrive(ticket)
            self._wait(ticket, waits, give_up)
            yield keep
        finally:
            with shield():
                self._leave(ticket)

    def _arrive(self, ticket: _Ticket) -> None:
        with self._cond:
            self._queue.append(ticket)
            self._hand_over()

    def _hand_over(self) -> None:
        """Free slots to the longest waiters; called with the lock held."""
        while self._queue and self._in_use < self.limit:
            self._queue.popleft().granted = True
            self._in_use += 1
        self.most = max(self.most, self._in_use)
        self._cond.notify_all()

    def _ahead(self, ticket: _Ticket) -> int | None:
        with self._cond:
            return None if ticket.granted else self._queue.index(ticket)

    def _wait(
        self, ticket: _Ticket, waits: Callable[[int | None], None], give_up: Callable[[], bool]
    ) -> None:
        told: int | None = None
        try:
            while (ahead := self._ahead(ticket)) is not None:
                if give_up():
                    raise SlotAbandoned()
                if ahead != told:
                    waits(ahead)
                    told = ahead
                with self._cond:
                    self._cond.wait_for(lambda: ticket.granted, LOOK_EVERY_S)
        finally:
            if told is not None:
                waits(None)

    def _leave(self, ticket: _Ticket, kept: bool = False) -> None:
        with self._cond:
            if ticket.kept and not kept:
                return
            if ticket.granted:
                ticket.granted = False
                self._in_use -= 1
            elif ticket in self._queue:
                self._queue.remove(ticket)
            self._hand_over()


class PipelineSignals:
    """Signals a pipeline from an activity's thread through the worker's client and loop."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def slot_wait(self, workflow_id: str, wait: SlotWait) -> None:
        """Best effort: a pipeline that cannot be told still gets its slot in turn."""
        if self._loop is None:
            return
        handle = self._client.get_workflow_handle(workflow_id)
        try:
            asyncio.run_coroutine_threadsafe(
                handle.signal(SLOT_WAIT_SIGNAL, wait), self._loop
            ).result(SIGNAL_TIMEOUT_S)
        except CancelledError:  # the SDK cancelling this activity, raised in its thread
            raise
        except Exception as exc:  # the wait goes on; only the pipeline's display lags
            log.warning("could not tell %s about its %s: %s", workflow_id, wait.text, exc)


class WorkerSlots:
    """One pool per kind of work on this worker, as activities use them."""

    def __init__(
        self, arch: LxdArch, builds: int, tests: int, signals: PipelineSignals | None = None
    ) -> None:
        self.arch = arch
        self.pools: dict[SlotKind, SlotPool] = {"build": SlotPool(builds), "test": SlotPool(tests)}
        self.signals = signals

    @property
    def text(self) -> str:
        build, test = self.pools["build"].limit, self.pools["test"].limit
        return (
            f"at most {build} build{'s' * (build != 1)} and {test} test "
            f"instance{'s' * (test != 1)} at once (ICEFLOE_WORKER_MAX_BUILDS, _MAX_TESTS)"
        )

    @contextmanager
    def held(
        self, kind: SlotKind, progress: Callable[[str], None]
    ) -> Iterator[Callable[[], Release]]:
        """In an activity: wait for a slot of `kind`, telling the heartbeat and the pipeline."""
        workflow_id = activity.info().workflow_id

        def waits(ahead: int | None) -> None:
            wait = SlotWait(arch=self.arch, kind=kind, waiting=ahead is not None, ahead=ahead or 0)
            progress(f"waiting for a {wait.text}" if wait.waiting else f"got a {kind} slot")
            if self.signals and workflow_id:
                self.signals.slot_wait(workflow_id, wait)

        try:
            with self.pools[kind].held(
                waits, activity.is_worker_shutdown, activity.shield_thread_cancel_exception
            ) as keep:
                yield keep
        except SlotAbandoned:
            raise ApplicationError(
                f"the {self.arch} worker shut down before a {kind} slot was free",
                type="WorkerShutdown",
            ) from None
