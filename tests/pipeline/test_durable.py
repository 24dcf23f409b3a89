"""Durable pipeline semantics on a real Temporal dev server, real LXD and the real image
server: a re-run redoes only what failed, a CI re-trigger retries, an arch nobody serves
is reported, and a cancelled pipeline cleans up.

These tests run their own Temporal server and workers, because they restart the i686
worker with a broken and then a fixed configuration: its LXD pins the wrong server
certificate at first, so its image pull (and only its) really fails.
"""

from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio
from sqlmodel import Session
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.worker import Worker

from activities.lxd_test.instances import listed
from clients.catalog import CatalogClient
from clients.lxd import connect_lxd
from core import search_attributes as sa
from core.config import REPO_DIR, Settings
from core.images import load_image
from core.pipeline import OperatorRequest, Phase, PipelineInput, PipelineProgress
from core.spec import ImageSpec
from harness.temporal import start_dev_server
from harness.waiting import until
from server_api.tls import ensure_self_signed
from server_api.tokens import create_token
from tests.support import assert_no_failed_attempts
from workers.arch import ArchWorker, arch_worker
from workers.control import control_worker
from workflows import operator
from workflows.pipeline import ImagePipeline
from workflows.trigger import Triggered, new_serial, progress, trigger

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client() -> AsyncIterator[Client]:
    """A dev server of this module's own, so no other test's workers take its tasks."""
    async with await start_dev_server() as env:
        yield env.client


@pytest.fixture(scope="module")
def wrong_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A certificate that is not the image server's: pinning it makes LXD refuse the feed."""
    d = tmp_path_factory.mktemp("wrong-ca")
    ensure_self_signed(d / "server.crt", d / "server.key", "127.0.0.1")
    return d / "server.crt"


@asynccontextmanager
async def running(
    client: Client, catalog: CatalogClient, settings: Settings, i686: Settings | None = None
) -> AsyncIterator[None]:
    """A control worker and x86_64 and i686 workers; `i686` overrides that host's settings."""
    lxd = lambda: connect_lxd(settings)  # noqa: E731
    with ThreadPoolExecutor(max_workers=8) as executor:
        workers: list[Worker | ArchWorker] = [
            control_worker(client, catalog, executor),
            arch_worker(client, "x86_64", catalog, lxd, settings, executor),
            arch_worker(client, "i686", catalog, lxd, i686 or settings, executor),
        ]
        async with AsyncExitStack() as stack:
            for w in workers:
                await stack.enter_async_context(w)
            yield


async def reaches(
    handle: WorkflowHandle, ok: Callable[[PipelineProgress], bool]
) -> PipelineProgress:
    async def there() -> PipelineProgress | None:
        now = await progress(handle)
        return now if ok(now) else None

    # A ceiling: five machinery-failed attempts take ~20 s, more when loaded.
    return await until(there, f"{handle.id} reached the awaited progress", 180, 0.1)


async def activities_of(handle: WorkflowHandle, run_id: str) -> list[str]:
    """`<activity type> <arch>` for every activity the run scheduled, from its history."""
    out = []
    run = handle._client.get_workflow_handle(handle.id, run_id=run_id)
    async for e in run.fetch_history_events():
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = e.activity_task_scheduled_event_attributes
            queue = attrs.task_queue.name.removeprefix("icefloe-arch-")
            out.append(f"{attrs.activity_type.name} {queue}")
    return out


def sample(*arches: str) -> ImageSpec:
    image = load_image(REPO_DIR / "images" / "busybox.yaml")
    return image.model_copy(update={"arches": list(arches)})


async def failed_on_i686(
    client: Client, catalog: CatalogClient, settings: Settings, wrong_ca: Path, tag: str
) -> tuple[PipelineInput, WorkflowHandle, Triggered, PipelineProgress]:
    """A pipeline whose i686 host pins the wrong certificate, once it waits for a retry.

    A host that cannot reach the image server is the test machinery failing, not the image:
    after the attempts run out the pipeline says so (machinery-failed) and waits."""
    # Forced: each caller's sample would otherwise be unchanged since the previous one's.
    inp = PipelineInput(spec=sample("x86_64", "i686"), serial=f"{new_serial()}-{tag}", force=True)
    broken = settings.model_copy(
        update={"server": settings.server.model_copy(update={"ca": wrong_ca})}
    )
    async with running(client, catalog, settings, i686=broken):
        handle, triggered = await trigger(client, inp, actor="ci")
        waiting = await reaches(handle, lambda p: p.phase == Phase.machinery_failed)
    return inp, handle, triggered, waiting


async def test_rerun_after_a_failed_run_retests_only_the_failed_arch(
    client, catalog: CatalogClient, settings: Settings, wrong_ca: Path
) -> None:
    inp, handle, first, waiting = await failed_on_i686(client, catalog, settings, wrong_ca, "rerun")
    assert waiting.tests["x86_64"].passed and not waiting.tests["i686"].passed
    assert "x509" in waiting.tests["i686"].fault
    assert "test machinery failed on i686" in waiting.details
    i686 = [a for a in catalog.version(inp.spec.name, inp.serial).assessments if a.arch == "i686"]
    assert "failed" not in {a.state for a in i686}, "the catalog must not say the image failed"
    async with running(client, catalog, settings):
        # The operator gives up on this run: cancelled, the version leaves testing.
        await operator.cancel(handle, OperatorRequest(actor="alice", reason="fix i686 host"))
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    event = catalog.events(inp.spec.name, inp.serial)[-1]
    assert (event.to_state, event.workflow_id) == ("inactive", handle.id)
    assert event.reason == "pipeline cancelled by alice: fix i686 host"

    async with running(client, catalog, settings):  # the i686 host is fixed
        handle, second = await trigger(client, inp, actor="ci")
        result = await handle.result()
    assert second.run_id != first.run_id
    assert result.state == "active", result.message
    await assert_no_failed_attempts(client.get_workflow_handle(handle.id, run_id=second.run_id))
    assert await activities_of(handle, second.run_id) == [
        "find_version icefloe-control",
        "publish_version icefloe-control",  # inactive -> testing, files already there
        "test_image i686",
        "find_hold icefloe-control",  # a hold is looked for before each promotion
        "promote_version icefloe-control",
    ]
    skipped = {t.arch: {c.skipped for c in t.checks} for t in result.tests}
    assert skipped == {"x86_64": {True}, "i686": {False}}


async def test_a_second_trigger_attaches_and_retries_a_waiting_pipeline(
    client, catalog: CatalogClient, settings: Settings, wrong_ca: Path
) -> None:
    inp, _, first, _ = await failed_on_i686(client, catalog, settings, wrong_ca, "again")
    async with running(client, catalog, settings):
        handle, again = await trigger(client, inp, actor="ci")
        result = await handle.result()
    assert (again.run_id, again.retried) == (first.run_id, ["i686"])
    assert result.state == "active", result.message
    tested = [a for a in await activities_of(handle, first.run_id) if a.startswith("test_")]
    assert tested == ["test_image x86_64", "test_image i686", "test_image i686"]


async def test_an_arch_without_a_worker_is_reported_and_cancel_cleans_up(
    client, catalog: CatalogClient, settings: Settings
) -> None:
    inp = PipelineInput(
        spec=sample("x86_64", "aarch64"), serial=new_serial() + "-noarm", worker_wait_s=1
    )
    async with running(client, catalog, settings):
        handle, _ = await trigger(client, inp, actor="ci")
        stuck = await reaches(handle, lambda p: p.waiting_for_worker == ["aarch64"])
        assert stuck.phase == "waiting-for-worker:aarch64"
        desc = await handle.describe()
        assert desc.typed_search_attributes.get(sa.PHASE) == "waiting-for-worker:aarch64"
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(ImagePipeline.retry, OperatorRequest(actor="ci"))
        assert "nothing to retry" in str(refused.value.cause)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    leftovers = [
        i.name
        for i in listed(connect_lxd(settings))
        if i.config.get("user.icefloe.serial") == inp.serial
    ]
    assert leftovers == []


async def test_an_operator_force_promotes_a_waiting_pipeline(
    client, catalog: CatalogClient, settings: Settings, wrong_ca: Path, image_server
) -> None:
    inp, handle, _, _ = await failed_on_i686(client, catalog, settings, wrong_ca, "forced")
    with Session(image_server.services.engine) as session:
        ops = CatalogClient(settings, token=create_token(session, "ops-alice", "operator"))
    async with running(client, catalog, settings):
        req = OperatorRequest(actor="alice", reason="i686 host broken, image fine")
        await operator.force_promote(handle, ops, inp.spec.name, inp.serial, req)
        result = await handle.result()
    ops.close()
    assert result.state == "active"
    assert result.message == "force-promoted by alice: i686 host broken, image fine"
    event = catalog.events(inp.spec.name, inp.serial)[-1]
    assert (event.actor, event.forced, event.workflow_id) == ("ops-alice", True, handle.id)
