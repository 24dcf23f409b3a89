"""POST /api/v1/pipelines over real HTTPS: CI starts (or attaches to) a real pipeline."""

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from core.pipeline import PipelineResult
from harness.servers import RunningServer, client
from workflows.trigger import new_serial

pytestmark = pytest.mark.temporal


@pytest.fixture
def trigger_server(temporal: Client, tmp_path: Path) -> Iterator[RunningServer]:
    """A server that reaches this test's Temporal through the usual ICEFLOE_TEMPORAL_*
    settings, read when the app is made. The workers' catalog is the session's server."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ICEFLOE_TEMPORAL_ADDRESS", temporal.service_client.config.target_host)
        with RunningServer(tmp_path / "trigger") as server:
            yield server


@pytest.fixture
def api(trigger_server: RunningServer) -> Iterator[httpx.Client]:
    publisher = client(trigger_server, trigger_server.token)
    yield publisher._http
    publisher.close()


@pytest.mark.lxd
async def test_ci_trigger_starts_then_attaches(api: httpx.Client, temporal: Client, workers):
    body = {"image": "busybox", "serial": new_serial() + "-api", "arches": ["x86_64"]}
    first = api.post("/api/v1/pipelines", json=body)
    assert first.status_code == 202, first.text
    started = first.json()
    assert started["workflow_id"] == f"icefloe:busybox:1.35:default:{body['serial']}"
    assert started["ui_link"].endswith(started["workflow_id"].replace(":", "%3A"))

    again = api.post("/api/v1/pipelines", json=body).json()
    assert again["run_id"] == started["run_id"]
    handle = temporal.get_workflow_handle(started["workflow_id"], result_type=PipelineResult)
    assert (await handle.result()).state == "active"


def test_ci_trigger_needs_a_token_and_a_known_definition(
    api: httpx.Client, trigger_server: RunningServer
):
    anonymous = httpx.post(
        f"{trigger_server.url}/api/v1/pipelines",
        json={"image": "busybox"},
        verify=ssl.create_default_context(cafile=trigger_server.server_settings.cert_path),
    )
    assert anonymous.status_code == 401
    missing = api.post("/api/v1/pipelines", json={"image": "no-such-image"})
    assert missing.status_code == 404 and "no image definition" in missing.json()["detail"]
