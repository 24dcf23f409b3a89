"""A refresh: each image of the catalogue (or of one refresh rule, or those asked for) through
its own ImagePipeline, started as a child, at most `max_parallel` at once, then the report.

A child that waits for a retry signals `pipeline_settled`: the refresh reports its failure
and frees its slot, the child keeps waiting on its own (it outlives the refresh, ABANDON).
Child ids are the pipeline's usual `icefloe:<image>:<serial>`, one serial per refresh, so a
replayed refresh never starts a second build; an image whose pipeline already runs outside
this refresh is reported in progress, not doubled.
"""

import asyncio
from pathlib import PurePath

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError, WorkflowAlreadyStartedError

from workflows.notify import tell_hooks
from workflows.options import CONTROL, options
from workflows.pipeline import ImagePipeline

with workflow.unsafe.imports_passed_through():
    from activities.refresh import CatalogueNow, RefreshActivities
    from core import search_attributes as sa
    from core.arch import CONTROL_TASK_QUEUE
    from core.catalogue import Definition
    from core.notices import NoticeKind
    from core.pipeline import PipelineInput, pipeline_workflow_id
    from core.refresh import (
        REFRESH_WORKFLOW,
        SETTLED_SIGNAL,
        ImageOutcome,
        Outcome,
        PipelineSettled,
        RefreshInput,
        RefreshReport,
        failing,
        finished_outcome,
        settled_outcome,
    )
    from core.spec import serial_at

# Since this patch the hooks hear of each refresh's report when it ends.
NOTIFY_FINISHED = "notify-refresh-finished"


def asked_for(d: Definition, names: list[str]) -> bool:
    """Named by its image (`busybox:1.35:default`) or its file (`busybox`)."""
    return d.image in names or PurePath(d.file).stem in names


@workflow.defn(name=REFRESH_WORKFLOW)
class Refresh:
    @workflow.init
    def __init__(self, inp: RefreshInput) -> None:
        self._report = RefreshReport(
            refresh_id=workflow.info().workflow_id, started_at=workflow.now()
        )
        self._settled: dict[str, PipelineSettled] = {}

    @workflow.query
    def progress(self) -> RefreshReport:
        """The report so far: outcomes of the images that settled, the others pending."""
        return self._report

    @workflow.signal(name=SETTLED_SIGNAL)
    def pipeline_settled(self, settled: PipelineSettled) -> None:
        self._settled[settled.image] = settled

    def _record(self, outcome: ImageOutcome) -> None:
        self._report.images.append(outcome)
        if outcome.image in self._report.pending:
            self._report.pending.remove(outcome.image)
        workflow.set_current_details(self._report.text())

    @workflow.run
    async def run(self, inp: RefreshInput) -> RefreshReport:
        now: CatalogueNow = await workflow.execute_activity_method(
            RefreshActivities.load_catalogue, **options(CONTROL, summary="read the catalogue")
        )
        catalogue = now.catalogue
        self._report.problems = catalogue.problems
        await workflow.execute_activity_method(
            RefreshActivities.sync_schedules,
            list(catalogue.rules()),
            **options(CONTROL, summary="sync the refresh schedules"),
        )
        chosen = [
            d
            for d in catalogue.definitions
            if (inp.rule is None or d.refresh.text == inp.rule)
            and (inp.images is None or asked_for(d, inp.images))
        ]
        known = {n for d in catalogue.definitions for n in (d.image, PurePath(d.file).stem)}
        for name in sorted(set(inp.images or []) - known):
            self._record(ImageOutcome(image=name, outcome=Outcome.unknown_image))
        running: dict[str, str] = await workflow.execute_activity_method(
            RefreshActivities.running_pipelines,
            [d.image for d in chosen],
            **options(CONTROL, summary="pipelines already running"),
        )
        self._report.pending = sorted(d.image for d in chosen if d.image not in running)
        for d in chosen:
            if d.image in running:
                self._record(
                    ImageOutcome(
                        image=d.image, outcome=Outcome.in_progress, workflow_id=running[d.image]
                    )
                )
        slots = asyncio.Semaphore(inp.max_parallel or now.max_parallel)
        serial = serial_at(workflow.now())
        await asyncio.gather(
            *(self._refresh(d, serial, inp.force, slots) for d in chosen if d.image not in running)
        )
        self._report.finished_at = workflow.now()
        workflow.set_current_details(self._report.text())
        await self._notify_finished()
        return self._report

    async def _notify_finished(self) -> None:
        if workflow.patched(NOTIFY_FINISHED):
            report = self._report
            data = report.model_dump(mode="json") | {"summary": report.text()}
            key = f"{workflow.info().run_id}:finished"
            await tell_hooks(NoticeKind.refresh_finished, "", None, data, key)

    async def _refresh(
        self, d: Definition, serial: str, force: bool, slots: asyncio.Semaphore
    ) -> None:
        """One image's pipeline, until it ends or settles waiting for a retry."""
        wf_id = pipeline_workflow_id(d.image, serial)
        async with slots:
            try:
                child = await workflow.start_child_workflow(
                    ImagePipeline.run,
                    PipelineInput(spec=d.spec, serial=serial, force=force),
                    id=wf_id,
                    task_queue=CONTROL_TASK_QUEUE,
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    search_attributes=sa.initial(d.spec, serial),
                    static_summary=f"{d.image} {serial} on {', '.join(d.spec.arches)}",
                )
            except WorkflowAlreadyStartedError:  # someone runs this very version already
                self._record(
                    ImageOutcome(image=d.image, outcome=Outcome.in_progress, workflow_id=wf_id)
                )
                return
            settled = asyncio.ensure_future(
                workflow.wait_condition(lambda: d.image in self._settled)
            )
            await workflow.wait([child, settled], return_when=asyncio.FIRST_COMPLETED)
            if not child.done():
                self._record(settled_outcome(d, wf_id, self._settled[d.image]))
                return
            settled.cancel()
            try:
                result = child.result()
            except ChildWorkflowError as exc:  # failed, cancelled, terminated, timed out
                why = f"the pipeline ended without a result: {exc.cause or exc}"
                self._record(failing(d, Outcome.machinery_failed, serial, wf_id, why))
                return
            self._record(finished_outcome(d, wf_id, result))
