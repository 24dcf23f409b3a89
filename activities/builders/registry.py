"""Every builder by the name an image definition's `builder:` gives: adding one (mkosi, a VM
builder) is a new module with a `Builder` function and one line here."""

import subprocess

from activities.builders.base import Builder
from activities.builders.busybox import build_busybox
from activities.builders.debootstrap import build_debootstrap
from activities.builders.distrobuilder import TOOLS, build_distrobuilder
from core.provenance import icefloe_version

BUILDERS: dict[str, Builder] = {
    "busybox": build_busybox,
    "debootstrap": build_debootstrap,
    "distrobuilder": build_distrobuilder,
}
# The Debian packages of the program each builder runs, first found wins; busybox images are
# put together by Icefloe itself.
PACKAGES: dict[str, tuple[str, ...]] = {"debootstrap": ("debootstrap",), "distrobuilder": TOOLS}


def tool_version(builder: str) -> str | None:
    """`<program> <version>` of what the builder runs on this host, for the build provenance;
    None when it cannot tell (a program not installed from a Debian package)."""
    if builder == "busybox":
        return f"icefloe {icefloe_version()}"
    for package in PACKAGES.get(builder, ()):
        query = ["dpkg-query", "--showformat=${Version}", "--show", package]
        try:
            found = subprocess.run(query, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if found.returncode == 0 and found.stdout.strip():
            return f"{package} {found.stdout.strip()}"
    return None
