"""icefloe_worker_up: the server asks Temporal which arches' task queues a worker polls, so
Prometheus can say a worker is missing before a pipeline waits for one. A real arch worker
process in a namespace of its own: its arch goes up, the catalogue's other arch stays down."""

import asyncio
from pathlib import Path

import pytest
from temporalio.client import Client

from core.config import Settings
from harness.metrics import scrape
from harness.processes import stop
from harness.publish import new_image, publish
from harness.remote import namespace
from harness.servers import RunningServer
from harness.waiting import until
from harness.workers import arch_worker_process

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]

NAMESPACE = "icefloe-workers-seen"


def worker_up(server: RunningServer) -> dict[str, str]:
    text = scrape(server)
    return dict(
        (line.split('"')[1], line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("icefloe_worker_up{")
    )


async def test_worker_up_follows_the_pollers_of_each_arch_queue(
    temporal: Client, settings: Settings, tmp_path: Path
) -> None:
    await namespace(temporal, NAMESPACE)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ICEFLOE_TEMPORAL_ADDRESS", temporal.service_client.config.target_host)
        env.setenv("ICEFLOE_TEMPORAL_NAMESPACE", NAMESPACE)
        with RunningServer(tmp_path / "server", worker_watch_s=0.2) as server:
            publish(server, new_image(), tmp=tmp_path / "files")  # x86_64 and i686
            down = {"i686": "0.0", "x86_64": "0.0"}
            await until(lambda: asyncio.to_thread(worker_up, server), "the arches seen", 30)
            await until(
                lambda: asyncio.to_thread(lambda: worker_up(server) == down), "no workers seen", 30
            )
            log = tmp_path / "worker.log"
            worker = arch_worker_process(
                temporal, server, settings, log, ICEFLOE_TEMPORAL_NAMESPACE=NAMESPACE
            )
            try:
                up = {"i686": "0.0", "x86_64": "1.0"}
                await until(
                    lambda: asyncio.to_thread(lambda: worker_up(server) == up), "x86_64 seen", 120
                )
            finally:
                stop(worker)
