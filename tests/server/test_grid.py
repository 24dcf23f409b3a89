"""One function decides every cell the status page, the version page, the badges and the
metrics show: a pass anywhere wins, as in the gate; not applicable is never shown as passed."""

import pytest

from core.catalog import AssessmentState as S
from server_api.grid import Cell, cell, outcome


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
