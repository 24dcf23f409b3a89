"""`icefloe revoke`, `hold` and `release`: take a bad version back, freeze an image."""

import argparse
from contextlib import closing

from cli.args import Commands, add_image, command, serial
from cli.catalog import operator


def cmd_revoke(args: argparse.Namespace) -> int:
    if (ops := operator("revoke")) is None:
        return 2
    with closing(ops):
        done = ops.revoke(args.image, args.serial, args.reason)
    print(f"{args.image} {args.serial} is revoked: in no feed, its files not served")
    if done.restored is not None:
        print(f"restored {done.restored.serial} to active in its place")
    else:
        print("nothing restored: enough versions are active, or none earlier passed every check")
    return 0


def cmd_hold(args: argparse.Namespace) -> int:
    if (ops := operator("hold")) is None:
        return 2
    with closing(ops):
        held = ops.hold(args.image, args.reason)
    print(f"{held.image} is held by {held.held_by}: no promotion until `icefloe release`")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    if (ops := operator("release")) is None:
        return 2
    with closing(ops):
        held = ops.release(args.image)
    print(f"{held.image} is released (held by {held.held_by} since {held.held_at:%Y-%m-%d %H:%M})")
    return 0


def register(commands: Commands) -> None:
    r = command(
        commands,
        "revoke",
        cmd_revoke,
        help="take a version out of every feed at once; restore the one before if need be",
    )
    add_image(r)
    r.add_argument("serial", type=serial)
    r.add_argument("--reason", required=True, help="why, for the audit trail")

    h = command(commands, "hold", cmd_hold, help="stop promotions of an image (an incident freeze)")
    add_image(h)
    h.add_argument("--reason", required=True, help="why, for the audit trail")

    rl = command(commands, "release", cmd_release, help="let promotions of a held image go on")
    add_image(rl)
