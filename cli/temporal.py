"""`icefloe setup-temporal`: what every deploy runs once per namespace (and again after an
upgrade): Icefloe's search attributes and the pruning schedule. Idempotent."""

import argparse
import asyncio
from datetime import timedelta

from cli.args import Commands, command, non_negative, positive
from clients.temporal import connect
from clients.temporal import register as register_search_attributes
from core.config import Settings
from core.pipeline import DAY_S, PruneInput
from workflows.schedule import PRUNE_SCHEDULE_ID, ensure_prune_schedule


async def _setup_temporal(args: argparse.Namespace) -> int:
    client = await connect(Settings())
    added = await register_search_attributes(client)
    print(f"search attributes: {'added ' + ', '.join(added) if added else 'all present'}")
    inp = PruneInput(expire_after_s=int(args.expire_after_days * DAY_S))
    done = await ensure_prune_schedule(client, timedelta(hours=args.every_hours), inp)
    print(f"schedule {PRUNE_SCHEDULE_ID} {done}: pruning every {args.every_hours:g}h")
    return 0


def cmd_setup_temporal(args: argparse.Namespace) -> int:
    return asyncio.run(_setup_temporal(args))


def register(commands: Commands) -> None:
    sc = command(
        commands,
        "setup-temporal",
        cmd_setup_temporal,
        help="register the search attributes and create or update the pruning schedule "
        "(idempotent; run once per namespace)",
    )
    sc.add_argument("--every-hours", type=positive, default=6.0)
    sc.add_argument("--expire-after-days", type=non_negative, default=3.0)
