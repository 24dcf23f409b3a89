"""`icefloe token create|list|revoke|follow`: tokens and private feeds, straight in the catalog
on the server host. This is how the first operator token comes to be; operators elsewhere use
the API. Each action is its own sub-command, so argparse refuses one missing what it needs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError

from cli.args import Commands, actions
from core.config import Settings

if TYPE_CHECKING:
    from sqlmodel import Session

    from server_api.edge import EdgeFiles

Action = Callable[[argparse.Namespace, "Session", "EdgeFiles"], None]


def expiry(at: datetime | None) -> str:
    return f"expires {at:%Y-%m-%d %H:%M}" if at else "no expiry"


def create(args: argparse.Namespace, session: Session, edge: EdgeFiles) -> None:
    from server_api import tokens
    from server_api.schemas import CredentialCreate, TokenCreate

    if args.feed:
        made = tokens.issue_credential(
            session,
            CredentialCreate(
                name=args.name or "",
                channel=args.channel,
                flavour=args.flavour,
                expires_in_s=args.expires_in,
            ),
            edge,
        )
        print(f"{Settings().server.url.rstrip('/')}{made.feed_path}/")
    else:
        req = TokenCreate(name=args.name or "", scope=args.scope, expires_in_s=args.expires_in)
        print(tokens.issue_token(session, req).token)


def list_all(_: argparse.Namespace, session: Session, __: EdgeFiles) -> None:
    from server_api import tokens

    for t in tokens.list_tokens(session):
        state = "revoked" if t.revoked_at else expiry(t.expires_at)
        print(f"token {t.id:>4}  {t.name:<24} {t.scope:<17} {state}")
    for c in tokens.list_credentials(session):
        state = "revoked" if c.revoked_at else expiry(c.expires_at)
        follows = f"{c.channel}/{c.flavour}"
        print(f"feed  {c.id:>4}  {c.name:<24} {follows:<17} {state}")


def revoke(args: argparse.Namespace, session: Session, edge: EdgeFiles) -> None:
    from server_api import tokens

    revoked = (
        tokens.revoke_credential(session, args.id, edge).name
        if args.feed
        else tokens.revoke_token(session, args.id).name
    )
    print(f"revoked {revoked}")


def follow(args: argparse.Namespace, session: Session, edge: EdgeFiles) -> None:
    from server_api import tokens

    moved = tokens.follow_channel(session, args.id, args.channel, edge)
    print(f"feed {moved.name} now follows {moved.channel}")


def cmd_token(args: argparse.Namespace) -> int:
    """Run the chosen action in one catalog session; a refusal is one line and exit 2."""
    from sqlmodel import Session

    from server_api.db import make_engine
    from server_api.edge import EdgeFiles
    from server_api.tokens import AccessError

    run: Action = args.run
    try:
        server = Settings().server
        edge = EdgeFiles(server.static_root)  # what the project's nginx checks feeds by
        with Session(make_engine(server.db_url)) as session:
            run(args, session, edge)
    except AccessError as exc:
        print(f"icefloe: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        err = exc.errors()[0]
        print(f"icefloe: --{str(err['loc'][-1]).replace('_s', '')}: {err['msg']}", file=sys.stderr)
        return 2
    return 0


def register(commands: Commands) -> None:
    action = actions(
        commands,
        "token",
        cmd_token,
        help="API tokens and private feeds on the server host (secrets printed once)",
        description="create: an API token, or with --feed a private feed URL; "
        "list: tokens and feeds, never secrets; revoke ID [--feed]; follow ID --channel C",
    )

    made = action("create", create, "an API token, or with --feed a private feed URL")
    made.add_argument("--name", help="who or what it is for")
    made.add_argument(
        "--scope", choices=["reader", "publisher", "operator", "metrics"], default="publisher"
    )
    made.add_argument("--expires-in", type=int, metavar="SECONDS", help="default: never")
    made.add_argument("--feed", action="store_true", help="a private feed credential")
    made.add_argument(
        "--channel", choices=["active", "testing"], default="active", help="the feed's channel"
    )
    made.add_argument("--flavour", choices=["lxd", "incus"], default="lxd")

    action("list", list_all, "tokens and feeds, never secrets")

    gone = action("revoke", revoke, "revoke a token, or with --feed a private feed")
    gone.add_argument("id", metavar="ID", type=int, help="as `icefloe token list` shows it")
    gone.add_argument("--feed", action="store_true", help="ID is a private feed's")

    moves = action("follow", follow, "make a private feed follow another channel")
    moves.add_argument("id", metavar="ID", type=int, help="the feed's, as `token list` shows it")
    moves.add_argument("--channel", choices=["active", "testing"], required=True)
