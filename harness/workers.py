"""An arch worker as a process of its own, in a Temporal namespace of its own: the tests that
kill or scrape a worker mid-check share it (test_on_lxd, test_metrics)."""

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.client import Client, WorkflowHandle

from clients.catalog import CatalogClient, CatalogRejected
from core.catalog import VersionView
from core.config import REPO_DIR, Settings
from core.pipeline import PipelineInput, PipelineResult
from core.spec import ImageSpec
from harness.processes import start
from harness.remote import namespace
from harness.servers import RunningServer
from harness.waiting import until
from workers.control import control_worker
from workflows.pipeline import ImagePipeline
from workflows.trigger import start_pipeline


def assessed(version: VersionView) -> dict[str, tuple[str, str]]:
    return {a.check: (a.state, a.evidence) for a in version.assessments}


def check_state(catalog: CatalogClient, image: ImageSpec, serial: str, check: str) -> str:
    """The catalog's state of one check, "" before the version or the result exists."""
    try:
        version = catalog.version(image.name, serial)
    except CatalogRejected:
        return ""
    return assessed(version).get(check, ("",))[0]


CRASH_NAMESPACE = "icefloe-crash"


async def own_namespace(temporal: Client) -> Client:
    """A namespace of the caller's own, so the in-process arch workers cannot take its tasks
    (made by the first caller that asks for it in this process)."""
    return await namespace(temporal, CRASH_NAMESPACE)


def arch_worker_process(
    temporal: Client, server: RunningServer, settings: Settings, log: Path, **extra: str
) -> subprocess.Popen:
    """`icefloe worker arch x86_64` as its own process, pointed at the test servers."""
    return worker_process(["arch", "x86_64"], temporal, server, settings, log, **extra)


def worker_process(
    role: list[str],
    temporal: Client,
    server: RunningServer,
    settings: Settings,
    log: Path,
    **extra: str,
) -> subprocess.Popen:
    """`icefloe worker ROLE...` as its own process, pointed at the test servers; `extra`
    ICEFLOE_* variables (another ICEFLOE_TEMPORAL_NAMESPACE) win."""
    env = {
        "ICEFLOE_TEMPORAL_ADDRESS": temporal.service_client.config.target_host,
        "ICEFLOE_TEMPORAL_NAMESPACE": CRASH_NAMESPACE,
        "ICEFLOE_SERVER_URL": server.url,
        "ICEFLOE_SERVER_CA": str(server.server_settings.cert_path),
        "ICEFLOE_PUBLISHER_TOKEN": server.token,
        "ICEFLOE_STATE_DIR": str(settings.state_dir),
        "ICEFLOE_DEB_DIR": str(settings.deb_dir),
        **extra,
    }
    return start([sys.executable, "-m", "cli.main", "worker", *role], log, env, REPO_DIR)


@asynccontextmanager
async def at_the_slow_check(
    client: Client, catalog: CatalogClient, image: ImageSpec, serial: str
) -> AsyncIterator[WorkflowHandle[ImagePipeline, PipelineResult]]:
    """A control worker in this process and the version's pipeline, once its check named
    `slow` runs on an arch worker the caller started."""
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with control_worker(client, catalog, executor):
            handle = await start_pipeline(client, PipelineInput(spec=image, serial=serial))
            await until(
                lambda: asyncio.to_thread(
                    lambda: check_state(catalog, image, serial, "slow") == "running"
                ),
                "the slow check to start",
                120,
                every_s=0.2,
            )
            yield handle
