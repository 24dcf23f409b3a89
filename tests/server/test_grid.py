"""One function decides every cell the status page, the version page, the badges and the
metrics show: a pass anywhere wins, as in the gate; not applicable is never shown as passed."""

from datetime import UTC, datetime

import pytest

from core.catalog import AssessmentState as S
from core.catalog import AssessmentView, VersionView
from server_api.badges import MAX_KEPT, BadgeCache
from server_api.grid import Cell, cell, grid, outcome


@pytest.mark.parametrize(
    ("states", "known", "shown"),
    [
        ((), False, Cell.not_run),
        ((S.passed,), False, Cell.passed),
        ((S.failed, S.passed), False, Cell.passed),  # another host passed it
        ((S.not_applicable,), False, Cell.not_applicable),
        ((S.running,), False, Cell.running),
        ((S.failed, S.running), False, Cell.running),  # a re-run of a failure
        ((S.failed,), False, Cell.failed),
        ((S.failed,), True, Cell.known_failure),
        ((S.passed,), True, Cell.passed),  # a known failure that passed after all
        ((), True, Cell.not_run),
    ],
)
def test_a_cell_from_its_results(states, known, shown) -> None:
    assert cell(set(states), known) == shown


@pytest.mark.parametrize(
    ("cells", "whole"),
    [
        ([Cell.passed, Cell.not_applicable], Cell.passed),
        ([Cell.passed, Cell.known_failure], Cell.known_failure),
        ([Cell.known_failure, Cell.not_run], Cell.not_run),
        ([Cell.not_run, Cell.running], Cell.running),
        ([Cell.running, Cell.failed, Cell.passed], Cell.failed),
        ([], Cell.passed),
    ],
)
def test_a_row_as_one(cells, whole) -> None:
    assert outcome(cells) == whole


def test_a_grid_has_the_required_checks_in_order_then_others_and_asks_for_known_failures():
    now = datetime.now(UTC)
    results = [
        AssessmentView(arch=a, check=c, host="h", state=s, updated_at=now)
        for a, c, s in (
            ("i686", "dns", S.failed),
            ("x86_64", "dns", S.failed),
            ("x86_64", "boots@privileged", S.passed),
        )
    ]
    version = VersionView(
        image="debian:sid:default",
        serial="20261203-1",
        state="testing",
        arches=[],
        assessments=results,
        created_at=now,
        state_changed_at=now,
    )
    asked = []

    def known(image: str, arch: str, check: str) -> bool:
        asked.append((image, arch, check))
        return arch == "i686" and check == "dns"

    shown = grid(version, ["dns", "boots"], known)
    assert shown.checks == ["dns", "boots", "boots@privileged"]
    assert [s.cell for s in shown.row("i686")] == [Cell.known_failure, Cell.not_run, Cell.not_run]
    assert [s.cell for s in shown.row("x86_64")] == [Cell.failed, Cell.not_run, Cell.passed]
    assert shown.cells["i686", "dns"].result == results[0]  # its evidence, a click away
    assert ("debian:sid:default", "i686", "dns") in asked


def test_the_badge_cache_is_bounded_whatever_names_are_asked_for() -> None:
    cache = BadgeCache()
    for n in range(MAX_KEPT + 1):
        cache.keep((f"no:such:{n}", None), b"<svg/>", 404)
    assert len(cache._kept) <= MAX_KEPT
    assert cache.fresh((f"no:such:{MAX_KEPT}", None)) is not None
