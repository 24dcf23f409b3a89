"""Both metrics endpoints scraped during a pipeline: the arch worker's Temporal runtime
metrics (polls, activity latencies) and the image server's (requests, uploads, versions)."""

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from clients.catalog import CatalogClient
from core.config import Settings
from harness.processes import free_port, stop
from harness.publish import busybox_spec
from harness.servers import RunningServer, http
from harness.workers import arch_worker_process, at_the_slow_check, own_namespace
from workflows.trigger import new_serial

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]


def series(text: str) -> set[str]:
    return {m[1] for m in re.finditer(r"^([a-z_]+)(?:\{| )", text, re.M)}


async def test_worker_and_server_metrics_during_a_pipeline(
    temporal: Client,
    image_server: RunningServer,
    catalog: CatalogClient,
    settings: Settings,
    tmp_path: Path,
) -> None:
    client = await own_namespace(temporal)
    image = busybox_spec("metrics", checks=["boots", {"name": "slow", "command": "sleep 3"}])
    serial = new_serial()
    address = f"127.0.0.1:{free_port()}"
    log = tmp_path / "worker.log"
    worker = arch_worker_process(
        temporal, image_server, settings, log, ICEFLOE_METRICS_ADDRESS=address
    )
    try:
        async with at_the_slow_check(client, catalog, image, serial) as handle:
            async with httpx.AsyncClient() as scraper:
                during = (await scraper.get(f"http://{address}/metrics")).text
            with http(image_server) as c:
                server = c.get("/metrics").text
            result = await asyncio.wait_for(handle.result(), 120)
    finally:
        stop(worker)

    assert result.state == "active", f"{result.message}\n{log.read_text()[-3000:]}"
    worker_series = series(during)
    for name in (
        "temporal_activity_task_received",  # polls that brought a task
        "temporal_num_pollers",
        "temporal_activity_execution_latency_bucket",
        "temporal_activity_schedule_to_start_latency_bucket",
        "temporal_worker_task_slots_used",
    ):
        assert name in worker_series, "\n".join(sorted(worker_series))
    assert 'task_queue="icefloe-arch-x86_64"' in during
    assert "icefloe_upload_bytes_total" in series(server)
    assert re.search(
        r'^icefloe_http_requests_total\{method="PUT",route="/api/v1/images/\{image\}/versions/'
        r'\{serial\}/assessments",status="200"\} [1-9]',
        server,
        re.M,
    ), "the worker's check results show in the server's request counts"
    assert re.search(r'^icefloe_catalog_versions\{state="testing"\} [1-9]', server, re.M)
