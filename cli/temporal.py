"""`icefloe setup-temporal`: what every deploy runs once per namespace (and again after an
upgrade): Icefloe's search attributes, the pruning schedule and one refresh schedule per
refresh rule of the catalogue (stale ones deleted). Idempotent."""

import argparse
import asyncio
from datetime import timedelta

from cli.args import Commands, command, non_negative, positive
from clients.schedules import sync_refresh_schedules
from clients.temporal import connect
from clients.temporal import register as register_search_attributes
from core.catalogue import load_catalogue
from core.config import Settings
from core.pipeline import DAY_S, PruneInput
from workflows.schedule import PRUNE_SCHEDULE_ID, ensure_prune_schedule


async def _setup_temporal(args: argparse.Namespace) -> int:
    settings = Settings()
    client = await connect(settings)
    added = await register_search_attributes(client)
    print(f"search attributes: {'added ' + ', '.join(added) if added else 'all present'}")
    inp = PruneInput(expire_after_s=int(args.expire_after_days * DAY_S))
    done = await ensure_prune_schedule(client, timedelta(hours=args.every_hours), inp)
    print(f"schedule {PRUNE_SCHEDULE_ID} {done}: pruning every {args.every_hours:g}h")
    catalogue = load_catalogue(settings.images_dir)
    rules = catalogue.rules()
    synced = await sync_refresh_schedules(client, list(rules))
    for schedule_id, what in synced.items():
        print(f"schedule {schedule_id} {what}")
    for rule, images in rules.items():
        print(f"  refresh {rule}: {', '.join(images)}")
    for p in catalogue.problems:
        print(f"  not in the catalogue: {p.file}: {p.text}")
    return 0


def cmd_setup_temporal(args: argparse.Namespace) -> int:
    return asyncio.run(_setup_temporal(args))


def register(commands: Commands) -> None:
    sc = command(
        commands,
        "setup-temporal",
        cmd_setup_temporal,
        help="register the search attributes, create or update the pruning schedule and the "
        "catalogue's refresh schedules (idempotent; run once per namespace and after changes)",
    )
    sc.add_argument("--every-hours", type=positive, default=6.0)
    sc.add_argument("--expire-after-days", type=non_negative, default=3.0)
