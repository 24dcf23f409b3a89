"""What every command module shares: how it adds its sub-command, and the argument types that
let argparse refuse bad input (exit 2, usage and the reason) before anything connects."""

import argparse
import math
import os
from collections.abc import Callable
from typing import TypeAlias

from pydantic import TypeAdapter, ValidationError

from core.spec import Serial

# What `register(commands)` in each module adds its sub-commands to.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Run = Callable[[argparse.Namespace], int]


def command(
    commands: Commands, name: str, run: Run, help: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A sub-command that `icefloe` runs with `run(args)`; its exit code is what `run` returns."""
    p = commands.add_parser(name, help=help, description=description)
    p.set_defaults(fn=run)
    return p


def actions(
    commands: Commands, name: str, run: Run, help: str, description: str
) -> Callable[[str, Callable[..., None], str], argparse.ArgumentParser]:
    """A command of actions (`icefloe token create`): `run(args)` runs each, and the function
    returned adds one, its own function kept as `args.run` for `run` to call."""
    group = commands.add_parser(name, help=help, description=description)
    subs = group.add_subparsers(dest="action", required=True)

    def action(action_name: str, does: Callable[..., None], text: str) -> argparse.ArgumentParser:
        p = command(subs, action_name, run, help=text, description=text)
        p.set_defaults(run=does)
        return p

    return action


def add_actor(p: argparse.ArgumentParser, help: str | None = None) -> None:
    """Who asks, for the audit trail: the login name unless given."""
    p.add_argument("--actor", default=os.environ.get("USER", "cli"), help=help)


def add_image(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="os:release:variant")


_SERIAL = TypeAdapter(Serial)


def serial(text: str) -> str:
    """A version's serial, by the rule the catalog and LXD hold it to."""
    try:
        return _SERIAL.validate_python(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(
            exc.errors()[0]["msg"].removeprefix("Value error, ")
        ) from None


def non_negative(text: str) -> float:
    """A finite number >= 0 (of hours, of days): float() also takes `nan` and `inf`."""
    value = float(text)  # argparse turns a ValueError into "invalid non_negative value"
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number >= 0")
    return value


def positive(text: str) -> float:
    """A finite number > 0, such as how often a schedule runs."""
    value = non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def positive_int(text: str) -> int:
    """A whole number > 0, such as a count of seconds."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value
