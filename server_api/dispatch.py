"""The dispatcher: starts one delivery workflow per delivery row the outbox holds, then marks
it dispatched. It wakes when a session that recorded a notice commits, and every
`hooks_dispatch_poll_s` sweeps for rows nobody started: another server's, or those its own
process left when it died between the commit and the start. Starting twice is harmless:
the workflow id is the delivery's own (workflows.deliver), so the second start attaches.

Rows are read only when there are some, so a server without hooks never calls Temporal."""

import asyncio
import logging
from contextlib import suppress

import anyio.to_thread
from sqlalchemy import event, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select
from temporalio.service import RPCError

from clients.temporal import TemporalNotSetUp, TemporalUnavailable
from core.cloudevents import cloudevent, render
from core.config import Settings
from core.notices import DeliveryInput, DeliveryState, NoticeKind, Retries
from server_api.models import Delivery, Hook, Notice, utcnow
from server_api.notices import RECORDED
from server_api.services import TemporalLink
from workflows.deliver import start_delivery

BATCH = 100
log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self, engine: Engine, temporal: TemporalLink, settings: Settings, source: str
    ) -> None:
        """`source`: the server's URL, the CloudEvents `source` of its notices."""
        self.engine = engine
        self.source = source.rstrip("/")
        self.temporal = temporal
        self.settings = settings
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def _committed(self, session: Session) -> None:
        mine = session.get_bind() is self.engine and session.info.pop(RECORDED, False)
        if mine and self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        event.listen(Session, "after_commit", self._committed)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        event.remove(Session, "after_commit", self._committed)
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            try:
                while await self.dispatch() == BATCH:
                    pass
            except (TemporalUnavailable, TemporalNotSetUp, RPCError, SQLAlchemyError) as exc:
                log.warning("deliveries not dispatched yet: %s", exc)
            except Exception:  # a defect: its traceback logged; the next wake or poll tries again
                log.exception("dispatching deliveries failed")
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.hooks_dispatch_poll_s)

    async def dispatch(self) -> int:
        """Start the workflows of up to BATCH undispatched deliveries; how many."""
        inputs = await anyio.to_thread.run_sync(self._pending)
        if inputs:
            client = await self.temporal.client()
            for inp in inputs:
                await start_delivery(client, inp)
                await anyio.to_thread.run_sync(self._mark, inp.delivery_id)
        return len(inputs)

    def _retries(self) -> Retries:
        s = self.settings
        return Retries(
            initial_s=s.hooks_retry_initial_s,
            maximum_s=s.hooks_retry_max_s,
            for_s=s.hooks_retry_for_s,
            timeout_s=s.hooks_timeout_s,
        )

    def _pending(self) -> list[DeliveryInput]:
        with Session(self.engine) as session:
            rows = session.exec(
                select(Delivery, Notice, Hook)
                .join(Notice, col(Notice.id) == col(Delivery.notice_id))
                .join(Hook, col(Hook.id) == col(Delivery.hook_id))
                .where(
                    col(Delivery.dispatched_at).is_(None),
                    Delivery.state == DeliveryState.pending,
                )
                .order_by(col(Delivery.id))
                .limit(BATCH)
            ).all()
            return [self._input(d, n, h) for d, n, h in rows]

    def _input(self, delivery: Delivery, notice: Notice, hook: Hook) -> DeliveryInput:
        made = cloudevent(
            notice.event_id,
            self.source,
            NoticeKind(notice.kind),
            notice.image,
            notice.serial,
            notice.at,
            notice.data,
        )
        body, headers = render(made, hook.format, hook.secret)
        assert delivery.id is not None and hook.id is not None
        return DeliveryInput(
            delivery_id=delivery.id,
            hook_id=hook.id,
            event_id=notice.event_id,
            url=hook.url,
            body=body,
            headers=headers,
            retries=self._retries(),
        )

    def _mark(self, delivery_id: int) -> None:
        with Session(self.engine) as session:
            session.execute(
                update(Delivery)
                .where(col(Delivery.id) == delivery_id, col(Delivery.dispatched_at).is_(None))
                .values(dispatched_at=utcnow())
            )
            session.commit()
