"""The one interface every builder has: a plain function from a job to the image's files.

A builder (busybox, debootstrap, distrobuilder, ...) is a module with such a function,
listed once in `registry`; the build activity picks one by the spec's `builder`.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.arch import LxdArch
from core.catalog import BuiltFile
from core.spec import ImageSpec

Progress = Callable[[str], None]
Built = list[tuple[BuiltFile, Path]]  # the metadata tarball, the rootfs, its package manifest


@dataclass(frozen=True)
class HostDirs:
    """What builders may keep on the worker host between builds."""

    debs: Path  # busybox-static .debs (deploy/setup-host downloads them)
    cache: Path  # package caches, e.g. debootstrap's downloaded .debs


@dataclass(frozen=True)
class BuildJob:
    """One arch of one version, to be built into `out_dir` (per arch: names repeat)."""

    spec: ImageSpec
    arch: LxdArch
    serial: str
    out_dir: Path
    progress: Progress = field(default=lambda _: None)


Builder = Callable[[BuildJob, HostDirs], Built]
