"""Temporal Schedules: created or brought to their definition (idempotent), and the refresh
schedules kept to exactly one per refresh rule of the catalogue."""

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from core.arch import CONTROL_TASK_QUEUE
from core.catalogue import parse_rule
from core.refresh import REFRESH_WORKFLOW, SCHEDULE_PREFIX, RefreshInput, schedule_id


async def ensure_schedule(client: Client, schedule_id: str, schedule: Schedule) -> str:
    """Create the schedule, or bring an existing one to this definition. Returns what it did."""
    try:
        await client.create_schedule(schedule_id, schedule)
        return "created"
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(replace)
        return "updated"


def refresh_schedule(rule: str) -> Schedule:
    """Start a Refresh of the rule's images at each time the rule names (cron in UTC)."""
    parsed = parse_rule(rule)
    spec = (
        ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=parsed.every_s))])
        if parsed.every_s is not None
        else ScheduleSpec(cron_expressions=[parsed.text], time_zone_name="UTC")
    )
    return Schedule(
        action=ScheduleActionStartWorkflow(
            REFRESH_WORKFLOW,
            RefreshInput(rule=rule),
            id=schedule_id(rule).replace(SCHEDULE_PREFIX, "icefloe-refresh:", 1),
            task_queue=CONTROL_TASK_QUEUE,
            static_summary=f"refresh the images whose definitions say `refresh: {rule}`",
        ),
        spec=spec,
        # A refresh that outlasts its interval is never doubled by the next tick.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def refresh_schedule_ids(client: Client) -> set[str]:
    return {s.id async for s in await client.list_schedules() if s.id.startswith(SCHEDULE_PREFIX)}


async def sync_refresh_schedules(client: Client, rules: list[str]) -> dict[str, str]:
    """One schedule per rule, created or updated; stale `icefloe-refresh-*` ones deleted.
    Returns, per schedule id, what was done to it."""
    done = {
        schedule_id(rule): await ensure_schedule(client, schedule_id(rule), refresh_schedule(rule))
        for rule in sorted(set(rules))
    }
    for stale in sorted(await refresh_schedule_ids(client) - set(done)):
        await client.get_schedule_handle(stale).delete()
        done[stale] = "deleted"
    return done
