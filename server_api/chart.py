"""The image page's chart: time to boot (the `boots` check's duration) and squashfs size per
version and arch, oldest to newest, so a regression shows as a step. Drawn here as SVG
coordinates for the template: no script, nothing to load."""

from collections.abc import Callable
from dataclasses import dataclass

from core.catalog import AssessmentState, FileType, VersionView
from server_api.units import size

WIDTH, PANEL, LEFT, RIGHT, TOP, BOTTOM = 640, 150, 64, 16, 28, 24
COLOURS = ("#0550ae", "#bc4c00", "#1a7f37", "#8250df")  # arches, in name order


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    title: str  # serial and value, the point's tooltip


@dataclass(frozen=True)
class Line:
    arch: str
    colour: str
    points: list[Point]

    @property
    def path(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


@dataclass(frozen=True)
class Panel:
    title: str
    top: float
    lines: list[Line]
    ticks: list[tuple[float, str]]  # y, label


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right: int
    panels: list[Panel]
    first: str  # the oldest serial shown
    last: str


Value = Callable[[VersionView, str], float | None]


def boot_s(version: VersionView, arch: str) -> float | None:
    return next(
        (
            r.duration_s
            for r in version.assessments
            if r.arch == arch and r.check == "boots" and r.state == AssessmentState.passed
        ),
        None,
    )


def squashfs_bytes(version: VersionView, arch: str) -> float | None:
    for a in version.arches:
        if a.arch == arch:
            return next((f.size for f in a.files if f.ftype == FileType.squashfs), None)
    return None


def seconds(x: float) -> str:
    return f"{x:.2f} s"


def _panel(
    versions: list[VersionView],
    arches: list[str],
    value: Value,
    title: str,
    say: Callable[[float], str],
    top: float,
) -> Panel:
    found = {(v.serial, a): value(v, a) for v in versions for a in arches}
    peak = max((x for x in found.values() if x is not None), default=0.0) or 1.0
    step = (WIDTH - LEFT - RIGHT) / max(len(versions) - 1, 1)

    def y(x: float) -> float:
        return top + PANEL - x / peak * PANEL

    lines = []
    for arch, colour in zip(arches, COLOURS * len(arches), strict=False):
        points = [
            Point(
                LEFT + (i * step if len(versions) > 1 else step / 2),
                y(x),
                f"{v.serial}: {say(x)}",
            )
            for i, v in enumerate(versions)
            if (x := found[v.serial, arch]) is not None
        ]
        lines.append(Line(arch, colour, points))
    ticks = [(y(peak * f), say(peak * f)) for f in (0, 0.5, 1)]
    return Panel(title, top, lines, ticks)


def chart(newest_first: list[VersionView]) -> Chart | None:
    """Both panels over these versions (a page of them, newest first); None if none."""
    versions = newest_first[::-1]
    if not versions:
        return None
    arches: list[str] = sorted({a.arch for v in versions for a in v.arches})
    boot = _panel(versions, arches, boot_s, "Time to boot", seconds, TOP)
    below = TOP + PANEL + BOTTOM + TOP
    sizes = _panel(versions, arches, squashfs_bytes, "Image size (squashfs)", size, below)
    return Chart(
        width=WIDTH,
        height=int(below + PANEL + BOTTOM),
        left=LEFT,
        right=RIGHT,
        panels=[boot, sizes],
        first=versions[0].serial,
        last=versions[-1].serial,
    )
