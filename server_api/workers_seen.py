"""Which arches have a worker, as Temporal sees it: the pollers of each catalogued arch's task
queue (core.arch.task_queue), asked every `every_s` by the server for `icefloe_worker_up`. A
pipeline whose arch has none waits in `waiting-for-worker`; this lets Prometheus say so first."""

import logging
import time
from collections.abc import Awaitable, Callable

import anyio
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from clients.temporal import TemporalUnavailable
from core.arch import task_queue
from server_api.models import VersionArch

log = logging.getLogger(__name__)
# An idle worker polls again as each long poll ends (a minute on Temporal's default): one
# not seen for longer than this has stopped.
SEEN_S = 90


def catalog_arches(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(
            session.exec(select(VersionArch.arch).distinct().order_by(col(VersionArch.arch)))
        )


class WorkerWatch:
    def __init__(
        self, temporal: Callable[[], Awaitable[Client]], engine: Engine, every_s: float
    ) -> None:
        self.temporal = temporal  # the server's client (services.TemporalLink.client)
        self.engine = engine
        self.every_s = every_s
        # arch -> whether a worker polled its queue lately; empty while Temporal is unreachable.
        self.up: dict[str, bool] = {}

    async def run(self) -> None:
        said = False
        while True:
            try:
                self.up = await self.look()
            except (TemporalUnavailable, RPCError) as exc:
                if self.up or not said:  # once per outage, not every `every_s`
                    log.warning("which workers poll is unknown: %s", exc)
                said, self.up = True, {}
            await anyio.sleep(self.every_s)

    async def look(self) -> dict[str, bool]:
        arches = await anyio.to_thread.run_sync(catalog_arches, self.engine)
        client = await self.temporal()
        seen = {}
        for arch in arches:
            answer = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=task_queue(arch)),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                )
            )
            now = time.time()
            seen[arch] = any(now - p.last_access_time.ToSeconds() <= SEEN_S for p in answer.pollers)
        return seen
