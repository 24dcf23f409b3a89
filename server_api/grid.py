"""A version's checks as cells, one per (arch, check): what the status page, the version
page's table, the badges and the metrics show. One function decides a cell, so none of
them can disagree with another."""

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum

from core.catalog import AssessmentState, AssessmentView, VersionView


class Cell(StrEnum):
    passed = "passed"
    failed = "failed"
    known_failure = "known-failure"  # failed, but an operator recorded it as known
    running = "running"
    not_run = "not-run"
    not_applicable = "not-applicable"

    @property
    def label(self) -> str:
        return self.value.replace("-", " ")


# Whether an active known failure excuses a check of an image on an arch
# (server_api.status.known_failures reads them).
KnownFailures = Callable[[str, str, str], bool]


def none_known(image: str, arch: str, check: str) -> bool:
    return False


def cell(states: Collection[AssessmentState], known_failure: bool = False) -> Cell:
    """One check on one arch from its results (one per host and instance type). A pass
    anywhere decides, as in the gate; a result still running is a re-run of a failure."""
    if AssessmentState.passed in states:
        return Cell.passed
    if AssessmentState.not_applicable in states:
        return Cell.not_applicable
    if AssessmentState.running in states:
        return Cell.running
    if AssessmentState.failed in states:
        return Cell.known_failure if known_failure else Cell.failed
    return Cell.not_run


# The result a cell shows (its evidence, duration, host): the one of the cell's own state.
SHOWN = {
    Cell.passed: AssessmentState.passed,
    Cell.not_applicable: AssessmentState.not_applicable,
    Cell.running: AssessmentState.running,
    Cell.failed: AssessmentState.failed,
    Cell.known_failure: AssessmentState.failed,
}


@dataclass(frozen=True)
class Shown:
    cell: Cell
    result: AssessmentView | None


@dataclass(frozen=True)
class Grid:
    """A version's checks (required ones in their order, then any other recorded) by arch."""

    checks: list[str]
    arches: list[str]
    cells: dict[tuple[str, str], Shown]

    def row(self, arch: str) -> list[Shown]:
        return [self.cells[arch, c] for c in self.checks]

    def count(self, arch: str) -> dict[Cell, int]:
        counts = dict.fromkeys(Cell, 0)
        for shown in self.row(arch):
            counts[shown.cell] += 1
        return counts


def grid(version: VersionView, required: list[str], known: KnownFailures) -> Grid:
    arches: list[str] = sorted(
        {a.arch for a in version.arches} | {r.arch for r in version.assessments}
    )
    extra = sorted({r.check for r in version.assessments} - set(required))
    checks = [*required, *extra]
    results: dict[tuple[str, str], list[AssessmentView]] = {}
    for r in version.assessments:
        results.setdefault((r.arch, r.check), []).append(r)
    cells: dict[tuple[str, str], Shown] = {}
    for arch in arches:
        for check in checks:
            mine = results.get((arch, check), [])
            decided = cell({r.state for r in mine}, known(version.image, arch, check))
            shown = next((r for r in mine if r.state == SHOWN.get(decided)), None)
            cells[arch, check] = Shown(decided, shown)
    return Grid(checks=checks, arches=arches, cells=cells)


def outcome(cells: Iterable[Cell]) -> Cell:
    """A row's or a version's cells as one: any failure, else anything unproven, else a
    known failure, else passed (not applicable counts as passed here, shown as such)."""
    found = set(cells)
    for worst in (Cell.failed, Cell.running, Cell.not_run, Cell.known_failure):
        if worst in found:
            return worst
    return Cell.passed
