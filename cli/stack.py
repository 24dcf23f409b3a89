"""`icefloe up`: the whole stack on this machine and the sample image through it."""

import argparse
import sys

from cli.args import Commands, command
from core.config import Settings


def cmd_up(args: argparse.Namespace) -> int:
    from deploy.stack import StackError, run_stack

    try:
        return run_stack(Settings(), once=args.once)
    except StackError as exc:
        print(f"icefloe: {exc}", file=sys.stderr)
        return 2


def register(commands: Commands) -> None:
    u = command(
        commands, "up", cmd_up, help="run the whole stack on this machine and the sample image"
    )
    u.add_argument("--once", action="store_true", help="stop after the sample pipeline")
