"""One delivery of a notice to a hook: a durable activity retried with back-off for as long
as the settings say (two days by default), so a receiver that is down for hours still gets
the event once it is back; then the outcome is reported to the server.

The server starts it with a deterministic id (`delivery_workflow_id`): a re-dispatch of the
same delivery (a second server, a restart) attaches to it, never sends twice."""

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError

from workflows.options import CONTROL, options

with workflow.unsafe.imports_passed_through():
    from activities.hooks import REFUSED, HookActivities
    from core.arch import CONTROL_TASK_QUEUE
    from core.notices import AttemptReport, DeliveryInput, DeliveryState

DELIVER_WORKFLOW = "DeliverNotice"


def delivery_workflow_id(inp: DeliveryInput) -> str:
    return f"icefloe-delivery:{inp.event_id}:{inp.hook_id}"


def _retry_policy(inp: DeliveryInput) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=inp.retries.initial_s),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=inp.retries.maximum_s),
        maximum_attempts=0,  # until schedule_to_close_timeout
        non_retryable_error_types=[REFUSED],
    )


@workflow.defn(name=DELIVER_WORKFLOW)
class DeliverNotice:
    @workflow.run
    async def run(self, inp: DeliveryInput) -> DeliveryState:
        try:
            done = await workflow.execute_activity_method(
                HookActivities.deliver,
                inp,
                task_queue=CONTROL_TASK_QUEUE,
                start_to_close_timeout=timedelta(seconds=inp.retries.timeout_s + 30),
                schedule_to_close_timeout=timedelta(seconds=inp.retries.for_s),
                retry_policy=_retry_policy(inp),
                summary=f"deliver to hook {inp.hook_id}",
            )
            report = AttemptReport(
                state=DeliveryState.delivered, attempt=done.attempt, status=done.status
            )
        except ActivityError as err:
            said = str(err.cause or err)
            report = AttemptReport(state=DeliveryState.failed, error=f"given up: {said}"[:2000])
        await workflow.execute_activity_method(
            HookActivities.report_delivery,
            args=[inp.delivery_id, report],
            **options(CONTROL, summary="report the delivery"),
        )
        return report.state


async def start_delivery(client: Client, inp: DeliveryInput) -> None:
    """Start the delivery's workflow unless it runs or ran already."""
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            DeliverNotice.run,
            inp,
            id=delivery_workflow_id(inp),
            task_queue=CONTROL_TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"deliver event {inp.event_id} to hook {inp.hook_id}",
        )
