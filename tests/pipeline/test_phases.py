"""Every phase a pipeline goes through, read from its history (each phase change upserts
the IcefloePhase search attribute, so the history holds them all in order, however short
one was), on the real dev server, image server and LXD: an inline spec from
POST /api/v1/pipelines taken from `queued` to `done`, and the `icefloe retry`, `promote`
and `cancel` commands run as subprocesses on a pipeline whose check fails."""

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import CancelledError

from clients.catalog import CatalogClient
from clients.lxd import connect_lxd
from core import search_attributes as sa
from core.config import REPO_DIR
from core.pipeline import PipelineInput, PipelineResult, pipeline_workflow_id
from core.spec import ImageSpec
from harness.publish import next_serial, publish
from harness.remote import namespace
from harness.servers import RunningServer, http, token
from tests.support import assert_no_failed_attempts
from workers.arch import arch_worker
from workers.control import control_worker
from workflows.pipeline import ImagePipeline
from workflows.trigger import start_pipeline

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]


@dataclass
class Stack:
    """A namespace of the test's own, an image server whose pipelines route starts
    pipelines there, and (once `start` ran) a control and an x86_64 worker for it."""

    client: Client
    server: RunningServer
    catalog: CatalogClient
    workers: AsyncExitStack

    async def start(self) -> None:
        settings = self.server.client_settings()
        executor = self.workers.enter_context(ThreadPoolExecutor(max_workers=8))
        for worker in (
            control_worker(self.client, self.catalog, executor),
            arch_worker(
                self.client,
                "x86_64",
                self.catalog,
                lambda: connect_lxd(settings),
                settings,
                executor,
            ),
        ):
            await self.workers.enter_async_context(worker)

    def env(self, **extra: str) -> dict[str, str]:
        """The CLI's environment: this stack's Temporal namespace and image server."""
        s = self.server.server_settings
        outside = {k: v for k, v in os.environ.items() if not k.startswith("ICEFLOE_")}
        return outside | {
            "ICEFLOE_TEMPORAL_ADDRESS": self.client.service_client.config.target_host,
            "ICEFLOE_TEMPORAL_NAMESPACE": self.client.namespace,
            "ICEFLOE_SERVER_URL": self.server.url,
            "ICEFLOE_SERVER_CA": str(s.cert_path),
            "ICEFLOE_PUBLISHER_TOKEN": self.server.token,
            "ICEFLOE_LOG_LEVEL": "ERROR",
            **extra,
        }


@pytest_asyncio.fixture(loop_scope="session")
async def stack(temporal: Client, tmp_path: Path) -> AsyncIterator[Stack]:
    client = await namespace(temporal, f"icefloe-phases-{uuid.uuid4().hex[:8]}")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ICEFLOE_TEMPORAL_ADDRESS", client.service_client.config.target_host)
        env.setenv("ICEFLOE_TEMPORAL_NAMESPACE", client.namespace)
        with RunningServer(tmp_path / "server") as server:
            catalog = CatalogClient(server.client_settings())
            async with AsyncExitStack() as workers:
                yield Stack(client, server, catalog, workers)
            catalog.close()


async def phases(handle: WorkflowHandle) -> list[str]:
    """The pipeline's phases in the order it entered them: the one it started in, then each
    upsert of IcefloePhase."""
    seen: list[str] = []
    async for e in handle.fetch_history_events():
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            fields = e.workflow_execution_started_event_attributes.search_attributes
        elif e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = e.upsert_workflow_search_attributes_event_attributes.search_attributes
        else:
            continue
        payload = fields.indexed_fields.get(sa.PHASE.name)
        if payload is not None:
            phase = json.loads(payload.data)
            if not seen or seen[-1] != phase:
                seen.append(phase)
    return seen


async def icefloe(stack: Stack, *args: str, **env: str) -> tuple[int, str]:
    """The installed `icefloe` command, as an operator runs it: exit code, stdout + stderr."""
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("icefloe")),
        *args,
        cwd=REPO_DIR,
        env=stack.env(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def until_phases(handle: WorkflowHandle, *wanted: str) -> list[str]:
    """The phases once they end with `wanted` (a ceiling, not a measure: 300 s)."""
    for _ in range(1500):
        now = await phases(handle)
        if tuple(now[-len(wanted) :]) == wanted:
            return now
        await asyncio.sleep(0.2)
    raise AssertionError(f"phases {now} never ended with {wanted}")


BUILT = ["queued", "looking-up", "building", "publishing", "testing"]


async def test_an_inline_spec_goes_from_queued_to_done(stack: Stack) -> None:
    """POST /api/v1/pipelines with a whole spec: with no worker yet the answer says
    `queued`; the workers then take it through every phase of a passing pipeline, and
    the spec's own check is what ran."""
    release = f"inline{uuid.uuid4().hex[:6]}"
    check = {"name": "inline-marker", "command": "echo inline", "stdout_pattern": "^inline$"}
    spec = {"os": "busybox", "release": release, "arches": ["x86_64"], "checks": ["boots", check]}
    serial = next_serial()
    with http(stack.server) as api:
        api.headers["Authorization"] = f"Bearer {stack.server.token}"
        answer = api.post("/api/v1/pipelines", json={"image": spec, "serial": serial})
    assert answer.status_code == 202, answer.text
    started = answer.json()
    image = ImageSpec.model_validate(spec)
    assert started["workflow_id"] == pipeline_workflow_id(image.name, serial)
    assert started["phase"] == "queued"

    await stack.start()
    handle = stack.client.get_workflow_handle(started["workflow_id"], result_type=PipelineResult)
    result = await asyncio.wait_for(handle.result(), 300)
    assert result.state == "active", result.message
    assert await phases(handle) == [*BUILT, "promoting", "done"]
    assessed = {a.check: a.state for a in stack.catalog.version(image.name, serial).assessments}
    assert assessed == {"boots": "passed", "inline-marker": "passed"}


def failing_definition(tmp: Path) -> tuple[Path, ImageSpec]:
    release = f"ops{uuid.uuid4().hex[:6]}"
    path = tmp / f"{release}.yaml"
    path.write_text(
        f"os: busybox\nrelease: {release}\narches: [x86_64]\n"
        "checks: [boots, {name: never, command: 'false'}]\n"
    )
    return path, ImageSpec(os="busybox", release=release, arches=["x86_64"])


async def test_retry_then_promote_commands(stack: Stack, tmp_path: Path) -> None:
    """`icefloe retry` re-tests what failed (retrying, testing, and it fails again);
    `icefloe promote` needs a reason and an operator token, then forces the version
    active with the operator as the actor and the pipeline ends done."""
    await stack.start()
    path, image = failing_definition(tmp_path)
    serial = next_serial()
    wf_id = pipeline_workflow_id(image.name, serial)
    code, out = await icefloe(stack, "trigger", "--image", str(path), "--serial", serial, "--wait")
    assert code == 1, out
    assert "x86_64 on" in out and ": never failed" in out
    assert f"`icefloe retry {image.name} {serial}`" in out
    handle = stack.client.get_workflow_handle(wf_id, result_type=PipelineResult)
    assert await phases(handle) == [*BUILT, "waiting-for-retry"]

    code, out = await icefloe(stack, "retry", image.name, serial, "--actor", "ci-bob")
    assert (code, out) == (0, f"{wf_id}: re-testing x86_64\n")
    assert await until_phases(
        handle, "waiting-for-retry", "retrying", "testing", "waiting-for-retry"
    )
    # Only the check that failed ran again: boots passed once, in the first run.
    version = stack.catalog.version(image.name, serial)
    assert {a.check: a.state for a in version.assessments} == {"boots": "passed", "never": "failed"}

    ops = token(stack.server, "operator", "ops-carol")
    refusal = "icefloe: promote needs --reason and ICEFLOE_OPERATOR_TOKEN\n"
    assert await icefloe(stack, "promote", image.name, serial, "--reason", "ok") == (2, refusal)
    assert await icefloe(stack, "promote", image.name, serial, ICEFLOE_OPERATOR_TOKEN=ops) == (
        2,
        refusal,
    )
    code, out = await icefloe(
        stack,
        "promote",
        image.name,
        serial,
        "--reason",
        "known flake",
        "--actor",
        "carol",
        ICEFLOE_OPERATOR_TOKEN=ops,
    )
    assert (code, out) == (0, f"{wf_id}: force-promoted\n")
    result = await asyncio.wait_for(handle.result(), 120)
    assert (result.state, result.message) == ("active", "force-promoted by carol: known flake")
    assert (await phases(handle))[-2:] == ["waiting-for-retry", "done"]
    event = stack.catalog.events(image.name, serial)[-1]
    assert (event.actor, event.to_state, event.forced, event.workflow_id) == (
        "ops-carol",
        "active",
        True,
        wf_id,
    )
    assert event.reason == "force-promoted by carol: known flake"

    # Operating on a pipeline that ended, or never ran: one line that says so.
    ended = await icefloe(stack, "retry", image.name, serial)
    assert ended == (2, "icefloe: Temporal refused it: workflow execution already completed\n")
    other = pipeline_workflow_id(image.name, "20200101-000000")
    never = await icefloe(stack, "cancel", image.name, "20200101-000000")
    assert never == (2, f"icefloe: Temporal refused it: workflow not found for ID: {other}\n")


async def test_cancel_command_ends_cancelled(stack: Stack, tmp_path: Path) -> None:
    await stack.start()
    path, image = failing_definition(tmp_path)
    serial = next_serial()
    code, out = await icefloe(stack, "trigger", "--image", str(path), "--serial", serial, "--wait")
    assert code == 1, out
    wf_id = pipeline_workflow_id(image.name, serial)
    code, out = await icefloe(
        stack, "cancel", image.name, serial, "--reason", "superseded", "--actor", "dana"
    )
    assert (code, out) == (0, f"{wf_id}: cancel requested\n")
    handle = stack.client.get_workflow_handle(wf_id)
    assert await until_phases(handle, "waiting-for-retry", "cancelled") == [
        *BUILT,
        "waiting-for-retry",
        "cancelled",
    ]
    with pytest.raises(WorkflowFailureError) as ended:
        await asyncio.wait_for(handle.result(), 120)
    assert isinstance(ended.value.cause, CancelledError)
    event = stack.catalog.events(image.name, serial)[-1]
    assert (event.from_state, event.to_state) == ("testing", "inactive")
    assert event.reason == "pipeline cancelled by dana: superseded"


async def test_a_held_image_waits_in_phase_held_then_promotes_once_released(
    stack: Stack, tmp_path: Path
) -> None:
    """`icefloe hold`: every check passes, the pipeline shows `held` with who and why and
    promotes nothing; `icefloe release`: it promotes on its next look."""
    await stack.start()
    image = ImageSpec(os="busybox", release=f"held{uuid.uuid4().hex[:6]}", arches=["x86_64"])
    publish(stack.server, image, tmp=tmp_path)  # the image exists, so it can be held
    ops = token(stack.server, "operator", "ops-dana")
    code, out = await icefloe(
        stack, "hold", image.name, "--reason", "incident 9", ICEFLOE_OPERATOR_TOKEN=ops
    )
    assert code == 0, out

    serial = next_serial()
    handle = await start_pipeline(
        stack.client, PipelineInput(spec=image, serial=serial, hold_poll_s=1)
    )
    await until_phases(handle, "testing", "held")
    progress = await handle.query(ImagePipeline.progress)
    assert f"{image.name} is held by ops-dana (incident 9)" in progress.details
    assert stack.catalog.version(image.name, serial).state == "testing"

    code, out = await icefloe(stack, "release", image.name, ICEFLOE_OPERATOR_TOKEN=ops)
    assert code == 0, out
    result = await asyncio.wait_for(handle.result(), 300)
    assert result.state == "active", result.message
    assert await phases(handle) == [*BUILT, "held", "promoting", "done"]
    await assert_no_failed_attempts(handle)
