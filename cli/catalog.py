"""The catalog through the image server's API: `icefloe versions`, `show` and `gc`."""

import argparse
import sys
from contextlib import closing

from cli.args import Commands, add_image, command, non_negative, serial
from cli.tables import check_line, version_page, versions_table
from clients.catalog import CatalogClient, publisher_token
from core.catalog import VersionState
from core.config import Settings
from core.pipeline import DAY_S


def reader(settings: Settings) -> CatalogClient:
    """A client for the catalog's read APIs: they need a token when public feeds are off,
    so it sends the publisher token, else an operator token."""
    operator_token = settings.operator_token.get_secret_value() if settings.operator_token else None
    return CatalogClient(settings, token=publisher_token(settings) or operator_token)


def cmd_versions(args: argparse.Namespace) -> int:
    settings = Settings()
    with closing(reader(settings)) as catalog:
        found = catalog.versions(state=args.state, image=args.image)
        check = catalog.image_check(args.image)
    print("\n".join(versions_table(args.image, found)))
    if check is not None:
        print(check_line(check))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    settings = Settings()
    with closing(reader(settings)) as catalog:
        version = catalog.version(args.image, args.serial)
        events = catalog.events(args.image, args.serial)
        packages = catalog.manifest(args.image, args.serial).arches
    link = settings.workflow_ui_link(version.workflow_id) if version.workflow_id else None
    print("\n".join(version_page(version, events, link, packages=packages)))
    return 0


def operator(what: str) -> CatalogClient | None:
    """A client with the operator token; None (said on stderr) if there is none."""
    settings = Settings()
    if not settings.operator_token:
        print(f"icefloe: {what} needs an operator token in ICEFLOE_OPERATOR_TOKEN", file=sys.stderr)
        return None
    return CatalogClient(settings, token=settings.operator_token.get_secret_value())


def cmd_gc(args: argparse.Namespace) -> int:
    """Delete the files of versions inactive for longer than the grace period."""
    if (ops := operator("gc")) is None:
        return 2
    with closing(ops):
        done = ops.gc(grace_s=int(args.grace_days * DAY_S))
    print(f"deleted {len(done.files)} files ({done.bytes} bytes) of {len(done.versions)} versions")
    for version in done.versions:
        print(f"  {version}")
    return 0


def register(commands: Commands) -> None:
    vs = command(
        commands,
        "versions",
        cmd_versions,
        help="an image's versions: state, since when, arches, results",
    )
    add_image(vs)
    vs.add_argument("--state", choices=[s.value for s in VersionState])

    sh = command(
        commands,
        "show",
        cmd_show,
        help="one version: each arch's check results with evidence, and its events",
    )
    add_image(sh)
    sh.add_argument("serial", type=serial)

    g = command(
        commands, "gc", cmd_gc, help="delete files of long-inactive versions (operator token)"
    )
    g.add_argument(
        "--grace-days", type=non_negative, default=7.0, help="inactive at least this long"
    )
