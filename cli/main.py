"""`icefloe`: run the image server or a worker, create tokens, trigger pipelines, run the stack."""

import argparse
import logging
import os
import sys

import httpx
from pydantic import ValidationError
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from cli import (
    catalog,
    catalogue,
    hooks,
    known,
    pipelines,
    refresh,
    revoke,
    server,
    stack,
    temporal,
    tokens,
    verify,
    workers,
)
from clients.catalog import CatalogRejected
from clients.imagestore import ImageLookupFailed
from clients.lxd import ArchNotSupported, LxdUnavailable
from clients.temporal import MetricsUnavailable, TemporalNotSetUp, TemporalUnavailable
from core.arch import UnknownArchError
from core.config import Settings, env_name
from core.images import ImageDefinitionError
from core.verify import PinRefused

# Each adds its own sub-commands, in the order `icefloe --help` lists them.
COMMAND_GROUPS = (
    server,
    tokens,
    workers,
    pipelines,
    catalog,
    known,
    catalogue,
    hooks,
    revoke,
    refresh,
    verify,
    temporal,
    stack,
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
    ImageLookupFailed,
    PinRefused,
)


def bad_settings(exc: ValidationError) -> str:
    """A bad ICEFLOE_* value, named by its variable."""
    return "; ".join(
        (f"{env_name(*e['loc'])}: " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
        for e in exc.errors()
    )


def explained(exc: Exception) -> tuple[str, int] | None:
    """The one line a known error is shown as, and the exit code; None for a defect (its
    traceback is wanted)."""
    if isinstance(exc, WorkflowUpdateFailedError):  # the pipeline said no, e.g. to a retry
        return str(exc.cause), 1
    if isinstance(exc, FRIENDLY):
        return str(exc), 2
    if isinstance(exc, httpx.TransportError):  # refused, timed out, a certificate not trusted
        return f"cannot reach the image server: {exc}", 2
    if isinstance(exc, RPCError):  # Temporal refused the call: no such pipeline, a bad schedule
        return f"Temporal refused it: {exc.message}", 2
    if isinstance(exc, ValidationError) and exc.title == Settings.__name__:
        return bad_settings(exc), 2
    return None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="icefloe", description=__doc__)
    commands = p.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)  # a usage error exits 2 here, with argparse's message
    try:
        logging.basicConfig(
            level=Settings().log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)
        code = args.fn(args)
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:
        if (known := explained(exc)) is None:
            raise
        said, code = known
        print(f"icefloe: {said}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # sdk-python#300: avoid a PyGILState_Release abort at interpreter exit


if __name__ == "__main__":
    main()
