"""`icefloe catalogue`: the image definitions a refresh would take, and every file it would not.

Reads only the definitions directory, so CI can run it on a change before anything builds.
"""

import argparse
from pathlib import Path

from cli.args import Commands, command
from cli.tables import table
from core.catalogue import Catalogue, load_catalogue
from core.config import Settings
from core.inputs import spec_digest


def catalogue_lines(where: Path, found: Catalogue) -> list[str]:
    lines = [
        f"catalogue {where}: {len(found.definitions)} definitions, {len(found.problems)} problems"
    ]
    rows = [
        [
            d.image,
            d.file,
            ",".join(d.spec.arches),
            d.spec.builder,
            d.refresh.text,
            "allowed to fail" if d.allow_failure else "",
            spec_digest(d.spec)[:12],
        ]
        for d in found.definitions
    ]
    if rows:
        headers = ["IMAGE", "FILE", "ARCHES", "BUILDER", "REFRESH", "", "SPEC"]
        lines += table(headers, rows, indent="  ")
    if found.problems:
        lines.append("not in the catalogue:")
        lines += [f"  {p.file}: {p.text}" for p in found.problems]
    return lines


def cmd_catalogue(args: argparse.Namespace) -> int:
    where = args.images_dir or Settings().images_dir
    found = load_catalogue(where)
    print("\n".join(catalogue_lines(where, found)))
    return 1 if found.problems else 0


def register(commands: Commands) -> None:
    c = command(
        commands,
        "catalogue",
        cmd_catalogue,
        help="list the image definitions and what is wrong with any that do not validate",
        description="Exit 1 if any definition file does not validate or two claim one image.",
    )
    c.add_argument(
        "--images-dir", type=Path, help="the definitions directory (default: ICEFLOE_IMAGES_DIR)"
    )
