"""Telling the hooks of what only a workflow sees (machinery failed, no worker polls an
arch, a refresh's report): a notice the server records once per key, then delivers."""

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.options import CONTROL, options

with workflow.unsafe.imports_passed_through():
    from activities.hooks import HookActivities
    from core.notices import NoticeCreate, NoticeKind


async def tell_hooks(
    kind: NoticeKind, image: str, serial: str | None, data: dict[str, Any], key: str
) -> None:
    """`key` makes a retried or replayed report one notice. Not recorded (the server
    refused it) is logged: a notice never fails the workflow that reports it."""
    notice = NoticeCreate(kind=kind, image=image, serial=serial, data=data, key=key)
    try:
        await workflow.execute_activity_method(
            HookActivities.record_notice, notice, **options(CONTROL, summary=f"notify {kind}")
        )
    except ActivityError as err:
        workflow.logger.warning(f"{kind} not recorded for the hooks: {err.cause or err}")
