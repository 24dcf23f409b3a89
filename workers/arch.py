"""An arch worker: builds and tests one arch on an LXD host that runs that arch.

Besides the Temporal worker it runs the janitor, at start and then periodically, so
instances a crashed worker left behind do not outlive their workflow.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from types import TracebackType

import pylxd
from temporalio.client import Client
from temporalio.worker import Worker

from activities.builders.activity import BuildActivities
from activities.heartbeat import BEAT_EVERY_S
from activities.lxd_test.activity import ImageTestActivities
from activities.lxd_test.instances import ensure_project
from activities.lxd_test.janitor import labelled, sweep
from clients.catalog import CatalogClient
from clients.lxd import checked_arch
from clients.temporal import running as workflows_running
from core.arch import task_queue
from core.config import Settings

log = logging.getLogger(__name__)
# Older than any test attempt can be (start-to-close is 30 minutes): surely abandoned.
MAX_INSTANCE_AGE_S = 2 * 3600.0


def temporal_scope(client: Client) -> str:
    """Whose workflows a janitor may judge: this namespace on this server. Several Temporal
    servers may share one LXD project (test runs do); each must leave the others' alone."""
    return f"{client.namespace}@{client.service_client.config.target_host}"


async def janitor_pass(
    client: Client, lxd: Callable[[], pylxd.Client], executor: ThreadPoolExecutor
) -> list[str]:
    """One sweep: delete labelled instances whose workflow stopped or that are too old."""
    loop = asyncio.get_running_loop()
    conn = await loop.run_in_executor(executor, lxd)
    found = await loop.run_in_executor(executor, labelled, conn, temporal_scope(client))
    running = await workflows_running(client, (i.workflow for i in found))
    deleted = await loop.run_in_executor(executor, sweep, conn, found, running, MAX_INSTANCE_AGE_S)
    if deleted:
        log.info("janitor deleted leftover instances: %s", ", ".join(deleted))
    return deleted


class ArchWorker:
    """The Temporal worker plus its janitor; used like a Worker (`async with`)."""

    def __init__(
        self,
        worker: Worker,
        client: Client,
        lxd: Callable[[], pylxd.Client],
        executor: ThreadPoolExecutor,
        janitor_every_s: float,
    ) -> None:
        self.worker = worker
        self._janitor_every_s = janitor_every_s
        self.task_queue = worker.task_queue
        self._janitor_args = (client, lxd, executor)
        self._janitor: asyncio.Task[None] | None = None

    async def _janitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self._janitor_every_s)
            try:
                await janitor_pass(*self._janitor_args)
            except Exception:  # a janitor failure must never stop the worker
                log.exception("janitor pass failed; next one in %.0fs", self._janitor_every_s)

    async def __aenter__(self) -> "ArchWorker":
        await janitor_pass(*self._janitor_args)
        await self.worker.__aenter__()
        self._janitor = asyncio.create_task(self._janitor_loop())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._janitor:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
        await self.worker.__aexit__(exc_type, exc, tb)


def arch_worker(
    client: Client,
    arch: str,
    catalog: CatalogClient,
    lxd: Callable[[], pylxd.Client],
    settings: Settings,
    executor: ThreadPoolExecutor,
) -> ArchWorker:
    """Refuses an arch this LXD host cannot run; creates the test project if missing."""
    conn = lxd()
    arch = checked_arch(arch, conn)
    ensure_project(conn, settings.lxd_project)
    build = BuildActivities(catalog, settings)
    test = ImageTestActivities(catalog, lxd, settings, temporal_scope(client))
    worker = Worker(
        client,
        task_queue=task_queue(arch),
        activities=[build.resolve_inputs, build.build_image, test.test_image],
        activity_executor=executor,
        max_concurrent_activities=4,
        # Every beat reaches the server (the SDK would hold them for 0.8 x the heartbeat
        # timeout): the last one recorded is at most a beat old when a worker dies, and
        # cancellation, which a sync activity only learns from a heartbeat the server
        # answers, deletes a cancelled test's instance within seconds.
        max_heartbeat_throttle_interval=timedelta(seconds=BEAT_EVERY_S),
        graceful_shutdown_timeout=timedelta(seconds=settings.graceful_shutdown_s),
    )
    return ArchWorker(worker, client, lxd, executor, settings.janitor_every_s)
