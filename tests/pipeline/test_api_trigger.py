"""POST /api/v1/pipelines over real HTTPS: CI starts (or attaches to) a real pipeline."""

import ssl
import uuid
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


@pytest.mark.lxd
async def test_ci_trigger_with_force_rebuilds_an_unchanged_image(
    api: httpx.Client, temporal: Client, workers
):
    spec = {"os": "busybox", "release": f"api-force-{uuid.uuid4().hex[:6]}", "arches": ["x86_64"]}
    spec["checks"] = ["boots"]

    async def run(**extra: object) -> PipelineResult:
        body = {"image": spec, "serial": new_serial() + f"-{uuid.uuid4().hex[:4]}", **extra}
        answer = api.post("/api/v1/pipelines", json=body)
        assert answer.status_code == 202, answer.text
        handle = temporal.get_workflow_handle(
            answer.json()["workflow_id"], result_type=PipelineResult
        )
        return await handle.result()

    first = await run()
    assert first.state == "active", first.message
    assert (await run()).unchanged_since == first.serial
    forced = await run(force=True)
    assert forced.state == "active" and forced.unchanged_since is None, forced.message
    bad = api.post("/api/v1/pipelines", json={"image": spec, "force": "please"})
    assert bad.status_code == 422 and "force" in bad.text
