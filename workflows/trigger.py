"""Starting a pipeline (or attaching to the one already running) and following it."""

import asyncio
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Literal, overload

from pydantic import BaseModel
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from clients.temporal import not_set_up
from core import search_attributes as sa
from core.arch import CONTROL_TASK_QUEUE
from core.catalog import AssessmentState
from core.pipeline import (
    AWAITING_RETRY,
    ArchTestResult,
    CheckOutcome,
    OperatorRequest,
    Phase,
    PipelineInput,
    PipelineProgress,
    PipelineResult,
    pipeline_workflow_id,
)
from core.spec import serial_at
from workflows.pipeline import ImagePipeline

Pipeline = WorkflowHandle[ImagePipeline, PipelineResult]


def new_serial(now: datetime | None = None) -> str:
    return serial_at(now or datetime.now(UTC))


async def start_pipeline(client: Client, inp: PipelineInput) -> Pipeline:
    """Start the version's workflow, or attach to it if it is running.

    A closed run of the same version (failed, cancelled, expired, active) does not block
    a new one: the new run asks the catalog and redoes only what is missing.
    """
    spec, serial = inp.spec, inp.serial
    try:
        return await client.start_workflow(
            ImagePipeline.run,
            inp,
            id=pipeline_workflow_id(spec.name, serial),
            task_queue=CONTROL_TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=sa.initial(spec, serial),
            static_summary=f"{spec.name} {serial} on {', '.join(spec.arches)}",
        )
    except RPCError as exc:
        raise not_set_up(exc, client.namespace) or exc from None


class Triggered(BaseModel):
    workflow_id: str
    run_id: str
    phase: str
    retried: list[str] = []  # arches a trigger of a pipeline waiting for a retry re-tests


async def trigger(client: Client, inp: PipelineInput, actor: str) -> tuple[Pipeline, Triggered]:
    """What CI calls: start or attach; a pipeline waiting for a retry gets one (a CI re-run)."""
    handle = await start_pipeline(client, inp)
    desc = await handle.describe()
    phase = desc.typed_search_attributes.get(sa.PHASE) or Phase.queued
    retried: list[str] = []
    if phase in AWAITING_RETRY:
        retried = await handle.execute_update(
            ImagePipeline.retry, OperatorRequest(actor=actor, reason="pipeline triggered again")
        )
        phase = Phase.retrying
    return handle, Triggered(
        workflow_id=handle.id, run_id=desc.run_id, phase=phase, retried=retried
    )


async def progress(handle: Pipeline) -> PipelineProgress:
    return await handle.query(ImagePipeline.progress)


def check_line(test: ArchTestResult, check: CheckOutcome) -> str:
    """One check's result as people read it: `i686 on vm: ipv4 failed`, or `i686 on vm:
    ipv6 not applicable (network icefloebr0 offers no IPv6)`."""
    line = f"{test.arch} on {test.host or '?'}: {check.check} {check.state.replace('_', ' ')}"
    if check.state == AssessmentState.not_applicable and check.evidence:
        line += f" ({check.evidence.strip().splitlines()[0]})"
    return line


def fault_line(test: ArchTestResult) -> str | None:
    """The test machinery's fault on an arch (no verdict was reached), if it had one."""
    return f"{test.arch}: test machinery failed: {test.fault}" if test.fault else None


def evidence_lines(check: CheckOutcome) -> list[str]:
    """A failed check's evidence, every line of it, indented under its result line."""
    if check.state != AssessmentState.failed:
        return []
    return [f"    {line}" for line in (check.evidence.strip() or "(no evidence)").splitlines()]


@overload
async def follow(
    handle: Pipeline,
    show: Callable[[str], None],
    every_s: float = ...,
    until_retry: Literal[False] = ...,
) -> PipelineResult: ...
@overload
async def follow(
    handle: Pipeline,
    show: Callable[[str], None],
    every_s: float = ...,
    *,
    until_retry: Literal[True],
) -> PipelineResult | PipelineProgress: ...
async def follow(
    handle: Pipeline,
    show: Callable[[str], None],
    every_s: float = 1.0,
    until_retry: bool = False,
) -> PipelineResult | PipelineProgress:
    """Wait for the result, showing the phase and each arch's checks as they change.

    `until_retry`: return the progress once the pipeline waits for a retry (a CI job
    should fail then, not wait days; re-running it retries).
    """
    result = asyncio.ensure_future(handle.result())
    phase, shown = None, set()

    def show_new(tests: Iterable[ArchTestResult]) -> None:
        for test in tests:
            for c in test.checks:
                line = check_line(test, c) + (" (passed earlier)" if c.skipped else "")
                if line not in shown:
                    shown.add(line)
                    for text in (line, *evidence_lines(c)):
                        show(text)
            fault = fault_line(test)
            if fault and fault not in shown:
                shown.add(fault)
                show(fault)

    while not result.done():
        try:
            now = await progress(handle)
        except Exception:  # a query can fail while a worker restarts; the next one will do
            now = None
        if now and now.phase != phase:
            phase = now.phase
            show(f"phase: {phase}")
        show_new(now.tests.values() if now else [])
        if until_retry and now and now.phase in AWAITING_RETRY:
            result.cancel()
            return now
        await asyncio.wait([result], timeout=every_s)
    show_new(result.result().tests)  # what finished after the last look
    return result.result()
