"""`icefloe hook add|list|remove|deliveries`: webhooks through the image server's API, with
the operator token (ICEFLOE_OPERATOR_TOKEN). `add` prints the hook's secret, this once."""

import argparse
import sys
from collections.abc import Callable
from contextlib import closing

from cli.args import Commands, actions, positive_int
from clients.hooks import HooksClient
from core.config import Settings
from core.notices import HookCreate, HookFormat, NoticeKind

Action = Callable[[argparse.Namespace, HooksClient], None]


def add(args: argparse.Namespace, api: HooksClient) -> None:
    fields = {"url": args.url, "format": args.format} | (
        {"events": args.event} if args.event else {}
    )
    made = api.add_hook(HookCreate.model_validate(fields))
    print(f"hook {made.id}: {made.url} ({made.format}) for {', '.join(made.events)}")
    print(f"secret (shown once; receivers check X-Icefloe-Signature with it): {made.secret}")


def list_all(_: argparse.Namespace, api: HooksClient) -> None:
    for h in api.hooks():
        print(f"hook {h.id:>4}  {h.url}  {h.format}  {', '.join(h.events)}  by {h.created_by}")


def remove(args: argparse.Namespace, api: HooksClient) -> None:
    gone = api.remove_hook(args.id)
    print(f"removed hook {gone.id} ({gone.url})")


def deliveries(args: argparse.Namespace, api: HooksClient) -> None:
    for d in api.deliveries(args.id, args.limit):
        what = f"{d.kind} {d.image}" + (f" {d.serial}" if d.serial else "")
        error = f"  last error: {d.last_error}" if d.last_error else ""
        print(
            f"{d.id:>6}  {d.updated_at:%Y-%m-%d %H:%M:%S}  {d.state:<9} "
            f"attempts {d.attempts:<3} {what}  event {d.event_id}{error}"
        )


def cmd_hook(args: argparse.Namespace) -> int:
    settings = Settings()
    if not settings.operator_token:
        print("icefloe: hooks need an operator token in ICEFLOE_OPERATOR_TOKEN", file=sys.stderr)
        return 2
    run: Action = args.run
    with closing(HooksClient(settings, token=settings.operator_token.get_secret_value())) as api:
        run(args, api)
    return 0


def register(commands: Commands) -> None:
    action = actions(
        commands,
        "hook",
        cmd_hook,
        help="webhooks: signed notices of versions, checks and refreshes (operator token)",
        description="add URL [--event E ...] [--format F]: subscribe (secret printed once); "
        "list; remove ID; deliveries ID: each delivery's state, attempts and last error",
    )

    made = action("add", add, "subscribe a URL to events; prints its secret once")
    made.add_argument("url", help="the receiver: https://... (http:// too)")
    made.add_argument(
        "--event",
        action="append",
        choices=[k.value for k in NoticeKind],
        help="an event to send (repeat it); default: every event",
    )
    made.add_argument("--format", choices=[f.value for f in HookFormat], default="cloudevents")
    action("list", list_all, "the hooks, never their secrets")
    gone = action("remove", remove, "remove a hook: nothing more is sent to it")
    gone.add_argument("id", metavar="ID", type=int, help="as `icefloe hook list` shows it")
    sent = action("deliveries", deliveries, "a hook's deliveries, newest first")
    sent.add_argument("id", metavar="ID", type=int, help="as `icefloe hook list` shows it")
    sent.add_argument("--limit", type=positive_int, default=50)
