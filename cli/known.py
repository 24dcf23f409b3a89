"""`icefloe known-failure add|list|remove` and `icefloe checks`: the checks an operator knows
fail (the gate does not require them until a date) and how often each check passes."""

import argparse
import sys
from contextlib import closing
from typing import get_args

from pydantic import TypeAdapter, ValidationError

from cli.args import Commands, add_image, command
from cli.catalog import reader
from cli.tables import known_failure_line, rates_table
from clients.catalog import CatalogClient
from core.arch import LxdArch
from core.catalog import KnownFailureCreate, UtcDateTime
from core.config import Settings

_UNTIL = TypeAdapter(UtcDateTime)


def until(text: str) -> str:
    """A date or an ISO datetime (UTC unless it names a zone); the server refuses a past one."""
    try:
        return _UNTIL.validate_python(text).isoformat()
    except ValidationError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a date (2026-12-31) nor an ISO datetime (2026-12-31T18:00)"
        ) from None


def operator(settings: Settings) -> CatalogClient | None:
    if not settings.operator_token:
        print("icefloe: this needs an operator token in ICEFLOE_OPERATOR_TOKEN", file=sys.stderr)
        return None
    return CatalogClient(settings, token=settings.operator_token.get_secret_value())


def cmd_add(args: argparse.Namespace) -> int:
    try:
        req = KnownFailureCreate(
            image=args.image,
            check=args.check,
            arch=args.arch,
            reason=args.reason,
            link=args.link,
            until=args.until,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        print(f"icefloe: --{err['loc'][0]}: {err['msg']}", file=sys.stderr)
        return 2
    ops = operator(Settings())
    if ops is None:
        return 2
    with closing(ops):
        made = ops.add_known_failure(req)
    print(known_failure_line(made))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with closing(reader(Settings())) as catalog:
        found = catalog.known_failures(args.image)
    print("\n".join(known_failure_line(k) for k in found) or "no known failures")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    ops = operator(Settings())
    if ops is None:
        return 2
    with closing(ops):
        gone = ops.remove_known_failure(args.id)
    print(f"removed {known_failure_line(gone)}")
    return 0


def cmd_checks(args: argparse.Namespace) -> int:
    with closing(reader(Settings())) as catalog:
        rates = catalog.check_rates(args.image, args.versions)
    print("\n".join(rates_table(rates)))
    return 0


def register(commands: Commands) -> None:
    known = commands.add_parser(
        "known-failure",
        help="checks known to fail: the gate does not require them until a date",
        description="add: record one (the same image, check and arch again replaces it); "
        "list: every one, expired ones marked; remove ID",
    )
    actions = known.add_subparsers(dest="action", required=True)
    add = command(actions, "add", cmd_add, help="record a known failure (operator token)")
    add.add_argument("--image", required=True, help="os:release:variant")
    add.add_argument("--check", required=True, help="as the image declares it, e.g. ipv6")
    add.add_argument("--arch", choices=get_args(LxdArch), help="default: every arch")
    add.add_argument("--reason", required=True, help="why it fails")
    add.add_argument("--link", help="the tracker's URL")
    add.add_argument(
        "--until", required=True, type=until, help="date or ISO datetime, UTC; then required again"
    )
    ls = command(actions, "list", cmd_list, help="every known failure, expired ones marked")
    ls.add_argument("--image", help="only this image's")
    rm = command(actions, "remove", cmd_remove, help="remove one at once (operator token)")
    rm.add_argument("id", metavar="ID", type=int, help="as `icefloe known-failure list` shows it")

    rates = command(
        commands, "checks", cmd_checks, help="each check's pass rate over an image's versions"
    )
    add_image(rates)
    rates.add_argument("--versions", type=int, default=20, help="how many of the newest")
