"""One durable workflow per image version:
build (per arch) -> publish to `testing` -> test (per arch) -> promote to `active`,
or wait for a retry until the version has been in testing too long, then expire it.
A version whose inputs equal the newest active version's is not built at all (`unchanged`).

Builds and tests run on each arch's own task queue, so a host of that arch does them.
A re-run asks the catalog first and skips every file already published and every
check already passed.
"""

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    RetryState,
    TimeoutType,
    is_cancelled_exception,
)
from temporalio.exceptions import TimeoutError as ActivityTimeout

from workflows.notify import tell_hooks
from workflows.options import BUILD, CONTROL, INPUTS, RETRY, TEST, options

with workflow.unsafe.imports_passed_through():
    from activities.builders.activity import BuildActivities
    from activities.catalog import CatalogActivities
    from activities.errors import IMAGE_HELD
    from activities.lxd_test.activity import ImageTestActivities
    from core import search_attributes as sa
    from core.arch import LxdArch, task_queue
    from core.catalog import (
        SATISFIED,
        ArchFiles,
        AssessmentState,
        Channel,
        ImageCheckView,
        KnownFailureView,
        VersionState,
        VersionView,
    )
    from core.inputs import VersionInputs, spec_digest
    from core.notices import NoticeKind
    from core.pipeline import (
        AWAITING_RETRY,
        DAY_S,
        ArchTestInput,
        ArchTestResult,
        BuildInput,
        CheckOutcome,
        InputsCheck,
        OperatorRequest,
        Phase,
        PipelineInput,
        PipelineProgress,
        PipelineResult,
        PromoteInput,
        PublishInput,
        RetireInput,
        VersionRef,
        VersionStatus,
    )
    from core.refresh import SETTLED_SIGNAL, PipelineSettled
    from core.slots import SLOT_WAIT_SIGNAL, SlotWait

ArgT = TypeVar("ArgT")
ResultT = TypeVar("ResultT")
# Since this patch a test activity that fails on every attempt is a machinery fault the
# pipeline waits on (histories from before it failed the workflow there).
MACHINERY_FAULTS = "machinery-faults-wait-for-retry"
# Since this patch a pipeline started by a refresh tells it when it waits for a retry.
TELL_REFRESH = "signal-refresh-when-awaiting-retry"
# Since this patch a new version's inputs are worked out and compared before building.
INPUTS_FIRST = "inputs-before-building"
# Since these patches the hooks hear of machinery failing and of an arch no worker polls.
NOTIFY_MACHINERY = "notify-machinery-failed"
NOTIFY_NO_WORKER = "notify-worker-missing"
# Since this patch a pipeline whose image is held waits in phase `held` before promoting.
HOLD_FIRST = "held-before-promotion"
# Since this patch checks that failed only where an active known failure covers them let the
# version through to the promotion (before it, any failed check waited for a retry).
KNOWN_FAILURES = "gate-honours-known-failures"


def _fault(err: ActivityError) -> str:
    """What failed in the test machinery, from the last attempt's failure."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        what = cause.message
    elif isinstance(cause, ActivityTimeout):
        what = f"the test activity timed out ({cause.type.name.lower() if cause.type else '?'})"
    else:
        what = str(cause or err)
    if err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED:
        what += f" (after {RETRY.maximum_attempts} attempts)"
    return what


def _passed_earlier(status: VersionStatus, arch: LxdArch, checks: list[str]) -> ArchTestResult:
    """An arch the catalog says has passed everything (or found it not applicable): shown
    as the catalog has it, not re-tested."""
    assert status.version is not None
    results = [a for a in status.version.assessments if a.arch == arch]
    states = {a.check: a.state for a in results if a.state in SATISFIED}
    return ArchTestResult(
        arch=arch,
        host=results[-1].host if results else "",
        checks=[
            CheckOutcome(check=c, state=states.get(c, AssessmentState.passed), skipped=True)
            for c in checks
        ],
    )


@workflow.defn(name="ImagePipeline")
class ImagePipeline:
    @workflow.init
    def __init__(self, inp: PipelineInput) -> None:
        self._inp = inp
        self._phase = Phase.queued
        self._details = ""
        self._no_worker: set[str] = set()
        self._slot_waits: dict[str, SlotWait] = {}  # per arch: its work waits for a slot
        self._tests: dict[str, ArchTestResult] = {}
        self._deadline: datetime | None = None
        self._retry: OperatorRequest | None = None
        self._promoted: OperatorRequest | None = None
        self._cancelled_by: OperatorRequest | None = None
        self._telling: list[asyncio.Task[None]] = []  # signals to the refresh, kept till sent
        self._notices = 0  # events told to the hooks so far: each one's key is its number

    @workflow.query
    def progress(self) -> PipelineProgress:
        """Phase, arches nobody polls, and per-arch, per-check results so far."""
        return PipelineProgress(
            phase=self._shown_phase(),
            waiting_for_worker=sorted(self._no_worker),
            tests=self._tests,
            testing_deadline=self._deadline,
            details=self._details + self._slot_lines(),
        )

    @workflow.update
    def retry(self, req: OperatorRequest) -> list[str]:
        """Re-run the failed checks now; returns the arches that will be re-tested."""
        self._retry = req
        return self._failed()

    @retry.validator
    def _retry_allowed(self, req: OperatorRequest) -> None:
        if self._phase not in AWAITING_RETRY:
            raise ValueError(f"nothing to retry: the pipeline is in phase {self._shown_phase()}")

    @workflow.signal
    def force_promoted(self, req: OperatorRequest) -> None:
        """An operator promoted the version through the catalog; the pipeline re-reads it."""
        self._promoted = req

    @workflow.signal
    def cancelling(self, req: OperatorRequest) -> None:
        """Sent just before a cancellation, so the catalog learns who cancelled and why."""
        self._cancelled_by = req

    @workflow.signal(name=SLOT_WAIT_SIGNAL)
    def slot_wait(self, wait: SlotWait) -> None:
        """An arch worker is full: this pipeline's work there waits its turn (or got it)."""
        if wait.waiting:
            self._slot_waits[wait.arch] = wait
        elif self._slot_waits.pop(wait.arch, None) is None:
            return
        self._show()

    def _failed(self) -> list[str]:
        return sorted(a for a, r in self._tests.items() if not r.passed)

    def _shown_phase(self) -> str:
        """The phase, unless some arch's work waits for a worker (that is what to fix first)
        or for a slot on its worker."""
        if self._no_worker:
            return Phase.waiting_for_worker.on(sorted(self._no_worker))
        if self._slot_waits:
            return Phase.waiting_for_slot.on(sorted(self._slot_waits))
        return self._phase.value

    def _slot_lines(self) -> str:
        """One line per arch whose work waits its turn ("x86_64: build slot: 3 ahead")."""
        return "".join(f"\n{w.text}" for _, w in sorted(self._slot_waits.items()))

    def _show(self, details: str | None = None) -> None:
        """Keep the phase search attribute and the UI's current details in step."""
        if details is not None:
            self._details = details
            workflow.logger.info(details)
        waiting = ", ".join(sorted(self._no_worker))
        text = self._details + (
            f"\nno worker polls {waiting} after {self._inp.worker_wait_s}s: start "
            f"`icefloe worker arch <arch>` on a host of that arch"
            if waiting
            else ""
        )
        workflow.upsert_search_attributes([sa.PHASE.value_set(self._shown_phase())])
        workflow.set_current_details(text + self._slot_lines())

    def _enter(self, phase: Phase, details: str) -> None:
        self._phase = phase
        self._show(details)
        parent = workflow.info().parent
        if parent and phase in AWAITING_RETRY and workflow.patched(TELL_REFRESH):
            settled = PipelineSettled(
                image=self._inp.spec.name,
                serial=self._inp.serial,
                phase=phase,
                details=details,
                tests=list(self._tests.values()),
            )
            self._telling.append(asyncio.ensure_future(self._tell(parent.workflow_id, settled)))

    async def _tell(self, refresh_id: str, settled: PipelineSettled) -> None:
        """A refresh that has ended (a retry failed again later) cannot be told: no matter."""
        try:
            await workflow.get_external_workflow_handle(refresh_id).signal(SETTLED_SIGNAL, settled)
        except FailureError as err:
            workflow.logger.info(f"refresh {refresh_id} not told: {err}")

    def _set_channel(self, state: VersionState) -> None:
        workflow.upsert_search_attributes([sa.CHANNEL.value_set(state.value)])

    async def _control(
        self, activity: Callable[[Any, ArgT], ResultT], arg: ArgT, summary: str
    ) -> ResultT:
        return await workflow.execute_activity_method(
            activity, arg, **options(CONTROL, summary=summary)
        )

    async def _on_arch(
        self,
        arch: LxdArch,
        activity: Callable[[Any, ArgT], ResultT],
        arg: ArgT,
        config: workflow.ActivityConfig,
        summary: str,
    ) -> ResultT:
        """Run on the arch's queue; while no worker picks the task up, say so and keep waiting."""
        while True:
            try:
                result = await workflow.execute_activity_method(
                    activity,
                    arg,
                    **options(
                        config,
                        task_queue=task_queue(arch),
                        schedule_to_start_timeout=timedelta(seconds=self._inp.worker_wait_s),
                        summary=summary,
                    ),
                )
            except ActivityError as err:
                cause = err.cause
                if not (
                    isinstance(cause, ActivityTimeout)
                    and cause.type == TimeoutType.SCHEDULE_TO_START
                ):
                    raise
                newly = arch not in self._no_worker
                self._no_worker.add(arch)
                self._show()
                if newly:
                    await self._notify_no_worker(arch)
                continue
            finally:
                # The worker says when a wait ends; this covers a signal that never came.
                if self._slot_waits.pop(arch, None) is not None:
                    self._show()
            if arch in self._no_worker:
                self._no_worker.discard(arch)
                self._show()
            return result

    @workflow.run
    async def run(self, inp: PipelineInput) -> PipelineResult:
        spec = inp.spec
        workflow.upsert_search_attributes(
            [
                sa.IMAGE.value_set(spec.name),
                sa.SERIAL.value_set(inp.serial),
                sa.ARCHES.value_set(list(spec.arches)),
            ]
        )
        try:
            return await self._pipeline()
        except BaseException as exc:
            if not is_cancelled_exception(exc):
                raise
            # Arch activities have finished their clean-up (WAIT_CANCELLATION_COMPLETED).
            who = self._cancelled_by or OperatorRequest(actor="temporal")
            self._enter(Phase.cancelled, who.says("cancelled"))
            if self._deadline is not None:  # published: take it out of the testing channel
                await self._retire(who.says("pipeline cancelled"))
            raise

    async def _pipeline(self) -> PipelineResult:
        spec, serial = self._inp.spec, self._inp.serial
        self._enter(Phase.looking_up, f"asking the catalog what {spec.name} {serial} already has")
        ref = VersionRef(image=spec.name, serial=serial)
        status = await self._control(CatalogActivities.find_version, ref, "find version")
        if status.version and status.version.state == VersionState.active:
            return self._done(status.version, "already active; nothing to do")
        inputs = None
        if status.version is None and workflow.patched(INPUTS_FIRST):
            inputs = await self._inputs()
            check = None if self._inp.force else await self._compare(inputs)
            if check:
                return self._unchanged(check, "its inputs equal", "nothing built")
        version = await self._build_and_publish(status, inputs)
        if isinstance(version, ImageCheckView):  # the server's second guard
            return self._unchanged(version, "its packages and definition equal", "not published")
        self._deadline = version.state_changed_at + timedelta(seconds=self._inp.expire_after_s)
        fingerprints = {a.arch: a.fingerprint for a in version.arches}
        required = spec.required_checks
        to_test = [a for a in spec.arches if status.missing.get(a, required)]
        self._tests = {
            a: _passed_earlier(status, a, required) for a in spec.arches if a not in to_test
        }
        while True:
            if to_test:
                await self._test(to_test, fingerprints)
                to_test = []
            failed = self._failed()
            if not failed:
                return await self._promote_unless_held()
            waived = await self._waived(failed)
            if waived:
                result = await self._promote_past(waived)
                if result:
                    return result
            until = (
                f"waiting for a retry until {self._deadline:%Y-%m-%d %H:%M} UTC, "
                f"then {serial} expires"
            )
            faults = [f"{a}: {self._tests[a].fault}" for a in failed if self._tests[a].fault]
            verdicts = [a for a in failed if not self._tests[a].fault]
            if faults:
                self._enter(
                    Phase.machinery_failed,
                    f"test machinery failed on {'; '.join(faults)}; "
                    + (f"checks failed on {', '.join(verdicts)}; " if verdicts else "")
                    + until,
                )
                await self._notify_machinery(faults)
            else:
                self._enter(
                    Phase.waiting_for_retry, f"checks failed on {', '.join(failed)}; {until}"
                )
            remaining = (self._deadline - workflow.now()).total_seconds()
            try:
                await workflow.wait_condition(
                    lambda: self._retry is not None or self._promoted is not None,
                    timeout=max(remaining, 0.001),
                    timeout_summary="expiry deadline",
                )
            except TimeoutError:
                return await self._expire(failed)
            if self._promoted is not None:
                result = await self._check_promoted()
                if result:
                    return result
                continue
            assert self._retry is not None
            self._enter(Phase.retrying, self._retry.says(f"retry of {', '.join(failed)}"))
            self._retry = None
            to_test = sorted(a for a in spec.arches if a in failed)

    async def _notify(self, kind: NoticeKind, data: dict[str, Any]) -> None:
        self._notices += 1
        key = f"{workflow.info().run_id}:{self._notices}"  # a re-run of the id tells anew
        await tell_hooks(kind, self._inp.spec.name, self._inp.serial, data, key)

    async def _notify_machinery(self, faults: list[str]) -> None:
        if workflow.patched(NOTIFY_MACHINERY):
            reason = f"test machinery failed on {'; '.join(faults)}"
            await self._notify(NoticeKind.machinery_failed, {"reason": reason, "faults": faults})

    async def _notify_no_worker(self, arch: str) -> None:
        if workflow.patched(NOTIFY_NO_WORKER):
            reason = f"no worker polls {arch} after {self._inp.worker_wait_s}s"
            await self._notify(NoticeKind.worker_missing, {"reason": reason, "arch": arch})

    async def _inputs(self) -> VersionInputs:
        """What each arch would be built from, asked of its host (which has its .debs)."""
        spec, serial = self._inp.spec, self._inp.serial
        self._show(f"working out what {spec.name} {serial} would be built from")
        arches = await asyncio.gather(
            *(
                self._on_arch(
                    arch,
                    BuildActivities.resolve_inputs,
                    BuildInput(spec=spec, serial=serial, arch=arch),
                    INPUTS,
                    f"inputs {arch}",
                )
                for arch in spec.arches
            )
        )
        return VersionInputs(
            spec_digest=spec_digest(spec), arches=dict(zip(spec.arches, arches, strict=True))
        )

    async def _compare(self, inputs: VersionInputs) -> ImageCheckView | None:
        check = InputsCheck(
            image=self._inp.spec.name, inputs=inputs, workflow_id=workflow.info().workflow_id
        )
        return await self._control(CatalogActivities.check_inputs, check, "compare inputs")

    def _unchanged(self, check: ImageCheckView, equal: str, outcome: str) -> PipelineResult:
        since = check.unchanged_since
        message = f"unchanged since {since}: {equal} those of {since}, the newest active version"
        message += f"; {outcome}"
        self._enter(Phase.unchanged, f"{check.image} {self._inp.serial}: {message}")
        return PipelineResult(
            image=check.image,
            serial=self._inp.serial,
            state=None,
            tests=[],
            message=message,
            unchanged_since=since,
        )

    async def _build_and_publish(
        self, status: VersionStatus, inputs: VersionInputs | None
    ) -> VersionView | ImageCheckView:
        """Build only the arches the catalog has no files for; publish unless already testing."""
        spec, serial, wf_id = self._inp.spec, self._inp.serial, workflow.info().workflow_id
        have = status.arch_files()
        if (
            status.version
            and status.version.state == VersionState.testing
            and not (set(spec.arches) - set(have))
        ):
            self._set_channel(VersionState.testing)
            return status.version
        to_build = [a for a in spec.arches if a not in have]
        if to_build:
            self._enter(Phase.building, f"building {spec.name} {serial} on {', '.join(to_build)}")
        built: list[ArchFiles] = await asyncio.gather(
            *(
                self._on_arch(
                    arch,
                    BuildActivities.build_image,
                    BuildInput(spec=spec, serial=serial, arch=arch),
                    BUILD,
                    f"build {arch}",
                )
                for arch in to_build
            )
        )
        self._enter(Phase.publishing, f"publishing {serial} to the {Channel.testing} channel")
        version = await self._control(
            CatalogActivities.publish_version,
            PublishInput(
                spec=spec,
                serial=serial,
                arches=[have.get(a) or next(b for b in built if b.arch == a) for a in spec.arches],
                workflow_id=wf_id,
                inputs=inputs,
                force=self._inp.force,
            ),
            "publish to testing",
        )
        if isinstance(version, VersionView):
            self._set_channel(version.state)
        return version

    async def _test(self, arches: list[LxdArch], fingerprints: dict[LxdArch, str]) -> None:
        serial = self._inp.serial
        self._enter(Phase.testing, f"testing {serial} on {', '.join(arches)}")
        results: list[ArchTestResult] = await asyncio.gather(
            *(self._test_arch(arch, fingerprints[arch]) for arch in arches)
        )
        self._tests.update({r.arch: r for r in results})

    async def _test_arch(self, arch: LxdArch, fingerprint: str) -> ArchTestResult:
        """The arch's verdicts; if the test machinery failed on every attempt, that fault."""
        inp = ArchTestInput(
            spec=self._inp.spec,
            serial=self._inp.serial,
            arch=arch,
            fingerprint=fingerprint,
            workflow_id=workflow.info().workflow_id,
        )
        try:
            return await self._on_arch(
                arch, ImageTestActivities.test_image, inp, TEST, f"test {arch}"
            )
        except ActivityError as err:
            if is_cancelled_exception(err) or not workflow.patched(MACHINERY_FAULTS):
                raise
            return ArchTestResult(arch=arch, host="", checks=[], fault=_fault(err))

    async def _promote_unless_held(
        self, passed: str = "every check passed on every arch"
    ) -> PipelineResult:
        """Promote once the image is not held; a hold placed between the look and the
        promotion (the server refuses it, naming the hold) means waiting again."""
        if not workflow.patched(HOLD_FIRST):
            return await self._promote(passed)
        while True:
            await self._wait_while_held()
            try:
                return await self._promote(passed)
            except ActivityError as err:
                cause = err.cause
                if not (isinstance(cause, ApplicationError) and cause.type == IMAGE_HELD):
                    raise

    async def _wait_while_held(self) -> None:
        image = self._inp.spec.name
        while hold := await self._control(CatalogActivities.find_hold, image, "look for a hold"):
            self._enter(
                Phase.held,
                f"{image} is held by {hold.held_by} ({hold.reason}); promotion of "
                f"{self._inp.serial} waits for `icefloe release {image}`",
            )
            await workflow.sleep(self._inp.hold_poll_s, summary="look for the hold again")

    async def _promote(self, passed: str = "every check passed on every arch") -> PipelineResult:
        serial = self._inp.serial
        self._enter(Phase.promoting, f"{passed}; promoting {serial} to active")
        version = await self._control(
            CatalogActivities.promote_version,
            PromoteInput(
                image=self._inp.spec.name, serial=serial, workflow_id=workflow.info().workflow_id
            ),
            "promote to active",
        )
        if version.state == VersionState.inactive:  # the server's retention, in the same move
            return self._done(
                version,
                f"{passed}, but newer versions hold every active slot, so the server's "
                "retention made it inactive as it was promoted; it is in no channel",
                inactive_by_retention=True,
            )
        return self._done(version, passed)

    async def _waived(self, failed: list[str]) -> list[KnownFailureView]:
        """The known failures that let these arches' failed checks through, if every one
        is covered (the catalog's gate says; a machinery fault never is)."""
        if any(self._tests[a].fault for a in failed) or not workflow.patched(KNOWN_FAILURES):
            return []
        ref = VersionRef(image=self._inp.spec.name, serial=self._inp.serial)
        gate = await self._control(CatalogActivities.check_gate, ref, "check gate")
        return [] if any(gate.unmet.values()) else gate.relied_on

    async def _promote_past(self, waived: list[KnownFailureView]) -> PipelineResult | None:
        """Promote relying on known failures; None if the server's gate refused meanwhile
        (one expired): then the failed checks wait for a retry like any other."""
        relied = "; ".join(k.says() for k in waived)
        try:
            return await self._promote_unless_held(
                f"every other check passed; known failures: {relied}"
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            workflow.logger.info(f"promotion past known failures refused: {err.cause or err}")
            return None

    async def _check_promoted(self) -> PipelineResult | None:
        """After an operator's forced promotion: done if the catalog agrees, else keep waiting."""
        who, self._promoted = self._promoted, None
        assert who is not None
        status = await self._control(
            CatalogActivities.find_version,
            VersionRef(image=self._inp.spec.name, serial=self._inp.serial),
            "re-read after forced promotion",
        )
        if status.version and status.version.state == VersionState.active:
            return self._done(status.version, who.says("force-promoted"))
        return None

    async def _retire(self, reason: str) -> VersionView:
        version = await self._control(
            CatalogActivities.retire_version,
            RetireInput(
                image=self._inp.spec.name,
                serial=self._inp.serial,
                reason=reason[:500],
                workflow_id=workflow.info().workflow_id,
            ),
            "retire from testing",
        )
        self._set_channel(version.state)
        return version

    async def _expire(self, failed: list[str]) -> PipelineResult:
        days = self._inp.expire_after_s / DAY_S
        what = "test machinery" if any(self._tests[a].fault for a in failed) else "checks"
        reason = f"expired: {what} failing on {', '.join(failed)} after {days:g} days in testing"
        return self._done(await self._retire(reason), reason)

    def _done(
        self, version: VersionView, message: str, inactive_by_retention: bool = False
    ) -> PipelineResult:
        self._set_channel(version.state)
        self._enter(Phase.done, f"{version.image} {version.serial} is {version.state}: {message}")
        return PipelineResult(
            image=version.image,
            serial=version.serial,
            state=version.state,
            tests=[self._tests[a] for a in self._inp.spec.arches if a in self._tests],
            message=message,
            inactive_by_retention=inactive_by_retention,
        )
