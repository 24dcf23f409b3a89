"""Arch names: LXD (kernel) names on hosts and task queues, Debian names in feeds.

This is the one place the two are converted.
"""

from typing import Literal

LxdArch = Literal["x86_64", "i686", "aarch64", "armv7l"]
DebianArch = Literal["amd64", "i386", "arm64", "armhf"]

_TO_DEBIAN: dict[str, DebianArch] = {
    "x86_64": "amd64",
    "i686": "i386",
    "aarch64": "arm64",
    "armv7l": "armhf",
}
_TO_LXD: dict[str, LxdArch] = {v: k for k, v in _TO_DEBIAN.items()}  # type: ignore[misc]

KNOWN_ARCHES: tuple[str, ...] = tuple(_TO_DEBIAN)


class UnknownArchError(ValueError):
    """An arch name that is neither an LXD nor a Debian name we support."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"unknown arch {name!r}: use one of {', '.join(KNOWN_ARCHES)} "
            f"(or the Debian names {', '.join(_TO_LXD)})"
        )


def to_debian(arch: str) -> DebianArch:
    """Debian name for an LXD arch name (what a simplestreams feed carries)."""
    try:
        return _TO_DEBIAN[arch]
    except KeyError:
        raise UnknownArchError(arch) from None


def to_lxd(arch: str) -> LxdArch:
    """LXD name for either spelling, so user input may use the Debian name too."""
    if arch in _TO_DEBIAN:
        return arch  # type: ignore[return-value]
    try:
        return _TO_LXD[arch]
    except KeyError:
        raise UnknownArchError(arch) from None


def task_queue(arch: str) -> str:
    """The task queue whose workers run on an LXD host of this arch."""
    return f"icefloe-arch-{to_lxd(arch)}"


CONTROL_TASK_QUEUE = "icefloe-control"
