"""`icefloe`: run the image server or a worker, create tokens, trigger pipelines, run the stack."""

import argparse
import asyncio
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import timedelta

import httpx
from pydantic import ValidationError
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from cli.tables import version_page, versions_table
from clients.catalog import CatalogClient, CatalogRejected, publisher_token
from clients.lxd import ArchNotSupported, LxdUnavailable, checked_arch, connect_lxd
from clients.temporal import (
    MetricsUnavailable,
    TemporalNotSetUp,
    TemporalUnavailable,
    connect,
    metrics_runtime,
)
from clients.temporal import register as register_search_attributes
from core.arch import UnknownArchError, to_lxd
from core.catalog import VersionState
from core.config import Settings, env_name
from core.images import ImageDefinitionError, image_path, load_image
from core.pipeline import (
    DAY_S,
    ArchTestResult,
    OperatorRequest,
    PipelineInput,
    PipelineProgress,
    PipelineResult,
    PruneInput,
    pipeline_workflow_id,
)
from workflows import operator
from workflows.schedule import PRUNE_SCHEDULE_ID, ensure_prune_schedule
from workflows.trigger import (
    check_line,
    evidence_lines,
    fault_line,
    follow,
    new_serial,
    progress,
    trigger,
)

# Errors whose message already says what to do: shown as one line, never a traceback.
FRIENDLY = (
    ArchNotSupported,
    LxdUnavailable,
    TemporalUnavailable,
    TemporalNotSetUp,
    MetricsUnavailable,
    UnknownArchError,
    ImageDefinitionError,
    CatalogRejected,
)


def bad_settings(exc: ValidationError) -> str:
    """A bad ICEFLOE_* value, named by its variable."""
    return "; ".join(
        (f"{env_name(*e['loc'])}: " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
        for e in exc.errors()
    )


def cmd_server(_: argparse.Namespace) -> int:
    import uvicorn

    from server_api.main import create_app
    from server_api.tls import ensure_self_signed

    settings = Settings().server
    if ensure_self_signed(settings.cert_path, settings.key_path, settings.host):
        print(f"made a self-signed certificate: {settings.cert_path}")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ssl_certfile=settings.cert_path,
        ssl_keyfile=settings.key_path,
        log_level="warning",
    )
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Tokens and private feeds, straight in the catalog on the server host: this is how
    the first operator token comes to be. Operators elsewhere use the API."""
    from sqlmodel import Session

    from server_api import tokens
    from server_api.db import make_engine
    from server_api.edge import EdgeFiles
    from server_api.schemas import CredentialCreate, TokenCreate

    def expiry(at: object) -> str:
        return f"expires {at:%Y-%m-%d %H:%M}" if at else "no expiry"

    try:
        server = Settings().server
        edge = EdgeFiles(server.static_root)  # what the project's nginx checks feeds by
        with Session(make_engine(server.db_url)) as session:
            if args.action == "create" and args.feed:
                made = tokens.issue_credential(
                    session,
                    CredentialCreate(
                        name=args.name or "",
                        channel=args.channel or "active",
                        flavour=args.flavour,
                        expires_in_s=args.expires_in,
                    ),
                    edge,
                )
                print(f"{server.url.rstrip('/')}{made.feed_path}/")
            elif args.action == "create":
                req = TokenCreate(
                    name=args.name or "", scope=args.scope, expires_in_s=args.expires_in
                )
                print(tokens.issue_token(session, req).token)
            elif args.action == "list":
                for t in tokens.list_tokens(session):
                    state = "revoked" if t.revoked_at else expiry(t.expires_at)
                    print(f"token {t.id:>4}  {t.name:<24} {t.scope:<17} {state}")
                for c in tokens.list_credentials(session):
                    state = "revoked" if c.revoked_at else expiry(c.expires_at)
                    follows = f"{c.channel}/{c.flavour}"
                    print(f"feed  {c.id:>4}  {c.name:<24} {follows:<17} {state}")
            elif args.id is None:
                print(f"icefloe: token {args.action} needs an id", file=sys.stderr)
                return 2
            elif args.action == "revoke":
                revoked = (
                    tokens.revoke_credential(session, args.id, edge).name
                    if args.feed
                    else tokens.revoke_token(session, args.id).name
                )
                print(f"revoked {revoked}")
            elif args.channel is None:
                print("icefloe: token follow needs --channel active|testing", file=sys.stderr)
                return 2
            else:
                moved = tokens.follow_channel(session, args.id, args.channel, edge)
                print(f"feed {moved.name} now follows {moved.channel}")
    except tokens.AccessError as exc:
        print(f"icefloe: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        err = exc.errors()[0]
        print(f"icefloe: --{str(err['loc'][-1]).replace('_s', '')}: {err['msg']}", file=sys.stderr)
        return 2
    return 0


async def _run_worker(args: argparse.Namespace) -> int:
    from temporalio.worker import Worker

    from workers.arch import ArchWorker, arch_worker
    from workers.control import control_worker

    settings = Settings()
    runtime = metrics_runtime(settings.metrics_address) if settings.metrics_address else None
    client = await connect(settings, runtime)
    catalog = CatalogClient(settings)
    with ThreadPoolExecutor(max_workers=16) as executor:
        worker: Worker | ArchWorker
        if args.role == "control":
            # The pipelines it runs set these; a namespace without them refuses every start.
            await register_search_attributes(client)
            worker = control_worker(client, catalog, executor)
        else:
            worker = arch_worker(
                client, args.arch, catalog, lambda: connect_lxd(settings), settings, executor
            )
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        async with worker:  # leaving the block shuts the worker down gracefully
            print(f"icefloe {args.role} worker polling {worker.task_queue}", flush=True)
            await stop.wait()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    if args.role == "arch":  # refuse a bad or foreign arch before connecting to Temporal
        checked_arch(args.arch or "(none given)", connect_lxd(Settings()))
    return asyncio.run(_run_worker(args))


async def _trigger(args: argparse.Namespace) -> int:
    settings = Settings()
    spec = load_image(image_path(args.image, settings.images_dir))
    if args.arch:
        spec = spec.model_copy(update={"arches": [to_lxd(a) for a in args.arch]})
    inp = PipelineInput(spec=spec, serial=args.serial or new_serial())
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


async def _operate(args: argparse.Namespace) -> int:
    settings = Settings()
    client = await connect(settings)
    handle = operator.pipeline(client, args.image, args.serial)
    req = OperatorRequest(actor=args.actor, reason=args.reason or "")
    if args.action == "status":
        now = await progress(handle)
        print(f"{handle.id}: {now.phase}\n  {now.details}")
        for test in now.tests.values():
            for c in test.checks:
                print(f"  {check_line(test, c)}")
        print_failures(list(now.tests.values()))
        if now.testing_deadline:
            print(f"  expires at {now.testing_deadline:%Y-%m-%d %H:%M} UTC unless it passes")
    elif args.action == "retry":
        arches = await operator.retry(handle, req)
        print(f"{handle.id}: re-testing {', '.join(arches)}")
    elif args.action == "promote":
        if not settings.operator_token or not args.reason:
            print("icefloe: promote needs --reason and ICEFLOE_OPERATOR_TOKEN", file=sys.stderr)
            return 2
        ops = CatalogClient(settings, token=settings.operator_token.get_secret_value())
        try:
            await operator.force_promote(handle, ops, args.image, args.serial, req)
        finally:
            ops.close()
        print(f"{handle.id}: force-promoted")
    else:
        await operator.cancel(handle, req)
        print(f"{handle.id}: cancel requested")
    return 0


def cmd_operate(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_operate(args))
    except WorkflowUpdateFailedError as exc:
        print(f"icefloe: {exc.cause}", file=sys.stderr)
        return 1
    except RPCError as exc:  # no such pipeline, or it has ended
        wf_id = pipeline_workflow_id(args.image, args.serial)
        print(f"icefloe: {wf_id}: {exc.message}", file=sys.stderr)
        return 1


async def _setup_temporal(args: argparse.Namespace) -> int:
    """What every deploy runs once (and again after an upgrade): idempotent."""
    client = await connect(Settings())
    added = await register_search_attributes(client)
    print(f"search attributes: {'added ' + ', '.join(added) if added else 'all present'}")
    inp = PruneInput(expire_after_s=int(args.expire_after_days * DAY_S))
    done = await ensure_prune_schedule(client, timedelta(hours=args.every_hours), inp)
    print(f"schedule {PRUNE_SCHEDULE_ID} {done}: pruning every {args.every_hours:g}h")
    return 0


def cmd_setup_temporal(args: argparse.Namespace) -> int:
    return asyncio.run(_setup_temporal(args))


def cmd_gc(args: argparse.Namespace) -> int:
    """Delete the files of versions inactive for longer than the grace period."""
    settings = Settings()
    if not settings.operator_token:
        print("icefloe: gc needs an operator token in ICEFLOE_OPERATOR_TOKEN", file=sys.stderr)
        return 2
    ops = CatalogClient(settings, token=settings.operator_token.get_secret_value())
    try:
        done = ops.gc(grace_s=int(args.grace_days * DAY_S))
    finally:
        ops.close()
    print(f"deleted {len(done.files)} files ({done.bytes} bytes) of {len(done.versions)} versions")
    for version in done.versions:
        print(f"  {version}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """A channel's feed as a static tree in DIR, from the catalog and store on the server host
    (as `icefloe token` reads them): for an offline site or to seed a mirror."""
    from pathlib import Path

    from sqlmodel import Session

    from core.catalog import Channel, Flavour
    from server_api.db import make_engine
    from server_api.feeds import generation, render
    from server_api.static import export
    from server_api.store import FileStore

    settings = Settings().server
    flavour = Flavour(args.flavour) if args.flavour else None
    with Session(make_engine(settings.db_url)) as session:
        feed = render(session, Channel(args.channel), flavour, generation(session))
    dest = Path(args.dir)
    try:
        missing = export(FileStore(settings.files_dir), feed, dest)
    except OSError as exc:
        print(f"icefloe: cannot write {dest}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"{dest}: streams/v1/index.json, images.json and {len(feed.files)} files")
    if missing:
        print(f"icefloe: the store lacks {len(missing)} listed files", file=sys.stderr)
        return 1
    return 0


def reader(settings: Settings) -> CatalogClient:
    """A client for the catalog's read APIs: they need a token when public feeds are off,
    so it sends the publisher token, else an operator token."""
    operator_token = settings.operator_token.get_secret_value() if settings.operator_token else None
    return CatalogClient(settings, token=publisher_token(settings) or operator_token)


def cmd_versions(args: argparse.Namespace) -> int:
    settings = Settings()
    with closing(reader(settings)) as catalog:
        found = catalog.versions(state=args.state, image=args.image)
    print("\n".join(versions_table(args.image, found)))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    settings = Settings()
    with closing(reader(settings)) as catalog:
        version = catalog.version(args.image, args.serial)
        events = catalog.events(args.image, args.serial)
        packages = catalog.manifest(args.image, args.serial).arches
    link = settings.workflow_ui_link(version.workflow_id) if version.workflow_id else None
    print("\n".join(version_page(version, events, link, packages=packages)))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from deploy.stack import StackError, run_stack

    try:
        return run_stack(Settings(), once=args.once)
    except StackError as exc:
        print(f"icefloe: {exc}", file=sys.stderr)
        return 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="icefloe", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("server", help="run the image server (HTTPS)").set_defaults(fn=cmd_server)

    t = sub.add_parser(
        "token",
        help="API tokens and private feeds on the server host (secrets printed once)",
        description="create: an API token, or with --feed a private feed URL; "
        "list: tokens and feeds, never secrets; revoke ID [--feed]; follow ID --channel C",
    )
    t.add_argument("action", choices=["create", "list", "revoke", "follow"])
    t.add_argument("id", nargs="?", type=int, help="for revoke and follow")
    t.add_argument("--name", help="for create: who or what it is for")
    t.add_argument("--scope", choices=["reader", "publisher", "operator"], default="publisher")
    t.add_argument("--expires-in", type=int, metavar="SECONDS", help="default: never")
    t.add_argument("--feed", action="store_true", help="a private feed credential")
    t.add_argument("--channel", choices=["active", "testing"], help="the feed's channel")
    t.add_argument("--flavour", choices=["lxd", "incus"], default="lxd")
    t.set_defaults(fn=cmd_token)

    w = sub.add_parser("worker", help="run a worker")
    w.add_argument("role", choices=["control", "arch"])
    w.add_argument("arch", nargs="?", help="for an arch worker: x86_64, i686, aarch64, ...")
    w.set_defaults(fn=cmd_worker)

    tr = sub.add_parser("trigger", help="start a pipeline, or attach to the running one")
    tr.add_argument(
        "--image",
        default="busybox",
        help="a definition's name (in ICEFLOE_IMAGES_DIR, else the shipped ones) or a .yaml path",
    )
    tr.add_argument("--serial", help="default: the current UTC time, YYYYMMDD-HHMMSS")
    tr.add_argument("--arch", action="append", help="override the definition's arches")
    tr.add_argument("--wait", action="store_true", help="follow until the outcome")
    tr.add_argument(
        "--worker-wait", type=int, metavar="S", help="say so when no arch worker polls for S s"
    )
    tr.add_argument("--actor", default=os.environ.get("USER", "cli"), help="for the audit trail")
    tr.set_defaults(fn=cmd_trigger)

    for action, text in (
        ("status", "show a pipeline's phase and per-arch, per-check results"),
        ("retry", "re-run a waiting pipeline's failed checks"),
        ("promote", "force-promote past the gate (operator token, --reason; audited)"),
        ("cancel", "cancel a pipeline: its instances are deleted, the version leaves testing"),
    ):
        op = sub.add_parser(action, help=text)
        op.add_argument("image", help="os:release:variant")
        op.add_argument("serial")
        op.add_argument("--reason")
        op.add_argument("--actor", default=os.environ.get("USER", "cli"))
        op.set_defaults(fn=cmd_operate, action=action)

    vs = sub.add_parser("versions", help="an image's versions: state, since when, arches, results")
    vs.add_argument("image", help="os:release:variant")
    vs.add_argument("--state", choices=[s.value for s in VersionState])
    vs.set_defaults(fn=cmd_versions)

    sh = sub.add_parser(
        "show", help="one version: each arch's check results with evidence, and its events"
    )
    sh.add_argument("image", help="os:release:variant")
    sh.add_argument("serial")
    sh.set_defaults(fn=cmd_show)

    sc = sub.add_parser(
        "setup-temporal",
        help="register the search attributes and create or update the pruning schedule "
        "(idempotent; run once per namespace)",
    )
    sc.add_argument("--every-hours", type=float, default=6.0)
    sc.add_argument("--expire-after-days", type=float, default=3.0)
    sc.set_defaults(fn=cmd_setup_temporal)

    g = sub.add_parser("gc", help="delete files of long-inactive versions (operator token)")
    g.add_argument("--grace-days", type=float, default=7.0, help="inactive at least this long")
    g.set_defaults(fn=cmd_gc)

    ex = sub.add_parser(
        "export",
        help="write a channel's feed and files as a static tree (an offline site, a mirror seed)",
        description="On the server host: DIR/streams/v1/index.json, images.json and DIR/files/ "
        "(hard links to the store where it can). Run again to update; files a previous export "
        "listed stay, so hosts with a cached index still find them.",
    )
    ex.add_argument("--channel", choices=["active", "testing"], required=True)
    ex.add_argument("--flavour", choices=["lxd", "incus"], help="default: both, as public feeds")
    ex.add_argument("dir", metavar="DIR")
    ex.set_defaults(fn=cmd_export)

    u = sub.add_parser("up", help="run the whole stack on this machine and the sample image")
    u.add_argument("--once", action="store_true", help="stop after the sample pipeline")
    u.set_defaults(fn=cmd_up)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        logging.basicConfig(
            level=Settings().log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)
        code = args.fn(args)
    except FRIENDLY as exc:
        print(f"icefloe: {exc}", file=sys.stderr)
        code = 2
    except httpx.TransportError as exc:  # refused, timed out, a certificate not trusted
        print(f"icefloe: cannot reach the image server: {exc}", file=sys.stderr)
        code = 2
    except ValidationError as exc:
        if exc.title != Settings.__name__:
            raise
        print(f"icefloe: {bad_settings(exc)}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # sdk-python#300: avoid a PyGILState_Release abort at interpreter exit


if __name__ == "__main__":
    main()
