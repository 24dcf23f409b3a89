"""`icefloe refresh [--image NAME ...] [--force] [--wait]`: refresh the catalogue (or some of
its images) now; with --wait, print the report and exit 0 only if the refresh is ok."""

import argparse
import asyncio

from cli.args import Commands, command
from clients.temporal import connect
from core.config import Settings
from core.refresh import RefreshInput
from workflows.on_demand import start_refresh


async def _refresh(args: argparse.Namespace) -> int:
    settings = Settings()
    client = await connect(settings)
    inp = RefreshInput(images=args.image, force=args.force)
    handle = await start_refresh(client, inp)
    print(f"refresh {handle.id}\n  {settings.workflow_ui_link(handle.id)}", flush=True)
    if not args.wait:
        return 0
    report = await handle.result()
    print(report.text())
    return 0 if report.ok else 1


def cmd_refresh(args: argparse.Namespace) -> int:
    return asyncio.run(_refresh(args))


def register(commands: Commands) -> None:
    sc = command(
        commands,
        "refresh",
        cmd_refresh,
        help="refresh the catalogue now: each image's pipeline, then a report per image",
    )
    sc.add_argument(
        "--image",
        action="append",
        metavar="NAME",
        help="only this image (os:release:variant, or its definition file's name); repeatable",
    )
    sc.add_argument("--force", action="store_true", help="rebuild even what is unchanged")
    sc.add_argument("--wait", action="store_true", help="wait for the report; exit 1 unless ok")
