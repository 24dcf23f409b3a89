"""Both metrics endpoints scraped during a pipeline: the arch worker's Temporal runtime
metrics (polls, activity latencies) and the image server's (requests, uploads, versions)."""

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from clients.catalog import CatalogClient
from core.catalog import FileType
from core.config import Settings
from harness.metrics import increase, scrape
from harness.processes import free_port, stop
from harness.publish import busybox_spec
from harness.servers import RunningServer
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
    before = scrape(image_server)  # the session's server: earlier tests counted too
    try:
        async with at_the_slow_check(client, catalog, image, serial) as handle:
            async with httpx.AsyncClient() as scraper:
                during = (await scraper.get(f"http://{address}/metrics")).text
            server = scrape(image_server)
            result = await asyncio.wait_for(handle.result(), 120)
        after = scrape(image_server)
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
    sizes = {f.ftype: f.size for f in catalog.version(image.name, serial).arches[0].files}
    built = sizes[FileType.metadata] + sizes[FileType.squashfs]
    # Every busybox build has the same one-line manifest: an earlier test may have sent it.
    uploaded = increase(before, after, "icefloe_upload_bytes_total")
    assert uploaded in (built, built + sizes[FileType.manifest])
    route = 'route="/api/v1/images/{image}/versions/{serial}/assessments"'
    recorded = 'icefloe_http_requests_total{method="PUT",' + route + ',status="200"}'
    # The worker's check results: each check running, then its verdict.
    assert increase(before, after, recorded) == 2 * len(image.required_checks)
    published = 'icefloe_http_requests_total{method="POST",route="/api/v1/versions",status="201"}'
    assert increase(before, after, published) == 1
    testing, active = (f'icefloe_catalog_versions{{state="{s}"}}' for s in ("testing", "active"))
    assert increase(before, server, testing) == 1, "in testing while its check ran"
    assert increase(before, after, testing) == 0
    assert increase(before, after, active) == 1
