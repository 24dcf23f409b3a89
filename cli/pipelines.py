"""Pipelines in Temporal: `icefloe trigger` (start or attach, `--wait` to follow it to its
outcome) and the operator's `status`, `retry`, `promote` and `cancel` of one pipeline."""

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from contextlib import closing

from cli.args import Commands, add_actor, add_image, command, positive_int, serial
from cli.catalog import reader
from clients.catalog import CatalogClient
from clients.temporal import connect
from core.arch import to_lxd
from core.catalog import VersionState
from core.config import Settings
from core.images import image_path, load_image
from core.pipeline import (
    ArchTestResult,
    OperatorRequest,
    PipelineInput,
    PipelineProgress,
    PipelineResult,
)
from workflows import operator
from workflows.trigger import (
    Pipeline,
    check_line,
    evidence_lines,
    fault_line,
    follow,
    new_serial,
    progress,
    trigger,
)


async def _trigger(args: argparse.Namespace) -> int:
    settings = Settings()
    spec = load_image(image_path(args.image, settings.images_dir))
    if args.arch:
        spec = spec.model_copy(update={"arches": [to_lxd(a) for a in args.arch]})
    inp = PipelineInput(spec=spec, serial=args.serial or new_serial(), force=args.force)
    if args.worker_wait:
        inp.worker_wait_s = args.worker_wait
    client = await connect(settings)
    handle, triggered = await trigger(client, inp, actor=args.actor)
    print(f"pipeline {handle.id} ({triggered.phase})", flush=True)
    if triggered.retried:
        print(f"  it was waiting for a retry: re-testing {', '.join(triggered.retried)}")
    print(f"  {settings.workflow_ui_link(handle.id)}", flush=True)
    if not args.wait:
        return 0
    result = await follow(handle, lambda line: print(f"  {line}", flush=True), until_retry=True)
    if isinstance(result, PipelineProgress):
        print(f"{result.details}\n  re-run this job, or `icefloe retry {spec.name} {inp.serial}`")
        return 1
    if result.unchanged_since:
        print(f"{result.image} {result.serial}: {result.message}; nothing built")
        return 0
    for test in result.tests:
        for check in test.checks:
            note = " (passed earlier)" if check.skipped else f" in {check.duration_s:.2f}s"
            print(f"  {check_line(test, check)}{note}")
    print_failures(result.tests)
    print(f"{result.image} {result.serial}: {result.state} ({result.message})")
    if result.inactive_by_retention:
        print_active_slots(settings, result)
    return 0 if result.state == "active" else 1


def print_failures(tests: list[ArchTestResult]) -> None:
    """Why each arch that did not pass did not: its fault, every failed check's evidence."""
    for test in tests:
        fault = fault_line(test)
        lines = [fault] if fault else []
        for check in test.checks:
            if evidence := evidence_lines(check):
                lines += [f"{check_line(test, check)}:", *evidence]
        if lines:
            print("\n".join(f"  {line}" for line in lines))


def print_active_slots(settings: Settings, result: PipelineResult) -> None:
    """Which versions hold the active slots that retention kept this one out of."""
    with closing(reader(settings)) as catalog:
        active = catalog.versions(state=VersionState.active, image=result.image)
    serials = sorted((v.serial for v in active), reverse=True)
    print(f"  active now: {', '.join(serials) or 'none'} (newer than {result.serial})")


def cmd_trigger(args: argparse.Namespace) -> int:
    return asyncio.run(_trigger(args))


# What an operator action does to the pipeline it names; its exit code.
Operation = Callable[[argparse.Namespace, Settings, Pipeline, OperatorRequest], Awaitable[int]]


async def status(
    _: argparse.Namespace, __: Settings, handle: Pipeline, ___: OperatorRequest
) -> int:
    now = await progress(handle)
    print(f"{handle.id}: {now.phase}\n  {now.details}")
    for test in now.tests.values():
        for c in test.checks:
            print(f"  {check_line(test, c)}")
    print_failures(list(now.tests.values()))
    if now.testing_deadline:
        print(f"  expires at {now.testing_deadline:%Y-%m-%d %H:%M} UTC unless it passes")
    return 0


async def retry(_: argparse.Namespace, __: Settings, handle: Pipeline, req: OperatorRequest) -> int:
    arches = await operator.retry(handle, req)
    print(f"{handle.id}: re-testing {', '.join(arches)}")
    return 0


async def promote(
    args: argparse.Namespace, settings: Settings, handle: Pipeline, req: OperatorRequest
) -> int:
    if not settings.operator_token or not args.reason:
        print("icefloe: promote needs --reason and ICEFLOE_OPERATOR_TOKEN", file=sys.stderr)
        return 2
    ops = CatalogClient(settings, token=settings.operator_token.get_secret_value())
    try:
        await operator.force_promote(handle, ops, args.image, args.serial, req)
    finally:
        ops.close()
    print(f"{handle.id}: force-promoted")
    return 0


async def cancel(
    _: argparse.Namespace, __: Settings, handle: Pipeline, req: OperatorRequest
) -> int:
    await operator.cancel(handle, req)
    print(f"{handle.id}: cancel requested")
    return 0


async def _operate(args: argparse.Namespace) -> int:
    settings = Settings()
    client = await connect(settings)
    handle = operator.pipeline(client, args.image, args.serial)
    req = OperatorRequest(actor=args.actor, reason=args.reason or "")
    operation: Operation = args.operation
    return await operation(args, settings, handle, req)


def cmd_operate(args: argparse.Namespace) -> int:
    return asyncio.run(_operate(args))


def register(commands: Commands) -> None:
    tr = command(
        commands, "trigger", cmd_trigger, help="start a pipeline, or attach to the running one"
    )
    tr.add_argument(
        "--image",
        default="busybox",
        help="a definition's name (in ICEFLOE_IMAGES_DIR, else the shipped ones) or a .yaml path",
    )
    tr.add_argument("--serial", type=serial, help="default: the current UTC time, YYYYMMDD-HHMMSS")
    tr.add_argument("--arch", action="append", help="override the definition's arches")
    tr.add_argument("--wait", action="store_true", help="follow until the outcome")
    tr.add_argument(
        "--force",
        action="store_true",
        help="build and publish even if nothing changed since the newest active version",
    )
    tr.add_argument(
        "--worker-wait",
        type=positive_int,
        metavar="S",
        help="say so when no arch worker polls for S s",
    )
    add_actor(tr, help="for the audit trail")

    operations: list[tuple[str, Operation, str]] = [
        ("status", status, "show a pipeline's phase and per-arch, per-check results"),
        ("retry", retry, "re-run a waiting pipeline's failed checks"),
        ("promote", promote, "force-promote past the gate (operator token, --reason; audited)"),
        (
            "cancel",
            cancel,
            "cancel a pipeline: its instances are deleted, the version leaves testing",
        ),
    ]
    for name, operation, text in operations:
        op = command(commands, name, cmd_operate, help=text)
        add_image(op)
        op.add_argument("serial", type=serial)
        op.add_argument("--reason")
        add_actor(op)
        op.set_defaults(operation=operation)
