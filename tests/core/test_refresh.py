"""A refresh's report: each pipeline's end (or its wait for a retry) as one outcome, allowed
failures kept apart, `.ok`, the summary table, and one schedule id per rule."""

from datetime import UTC, datetime, timedelta

import pytest

from core.catalog import AssessmentState, VersionState
from core.catalogue import Definition, DefinitionProblem, parse_rule
from core.pipeline import ArchTestResult, CheckOutcome, Phase, PipelineResult
from core.refresh import (
    ImageOutcome,
    Outcome,
    PipelineSettled,
    RefreshReport,
    finished_outcome,
    schedule_id,
    settled_outcome,
)
from harness.publish import busybox_spec

T0 = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)


def definition(allow_failure: bool = False) -> Definition:
    return Definition(
        file="bb.yaml",
        spec=busybox_spec("1.36"),
        refresh=parse_rule("@daily"),
        allow_failure=allow_failure,
    )


def arch_tests(*states: AssessmentState, fault: str = "") -> list[ArchTestResult]:
    checks = [
        CheckOutcome(check=f"c{n}", state=s, evidence=f"evidence {n}") for n, s in enumerate(states)
    ]
    return [ArchTestResult(arch="x86_64", host="vm", checks=checks, fault=fault)]


def result(state: VersionState | None, **fields: object) -> PipelineResult:
    base = {
        "image": "busybox:1.36:default",
        "serial": "20261203-030000",
        "tests": [],
        "message": "m",
    }
    return PipelineResult.model_validate(base | {"state": state} | fields)


def test_an_ended_pipeline_is_unchanged_active_or_failed() -> None:
    d = definition()
    unchanged = finished_outcome(d, "wf", result(None, unchanged_since="20261201-030000"))
    assert (unchanged.outcome, unchanged.serial) == (Outcome.unchanged, "20261201-030000")
    assert finished_outcome(d, "wf", result(VersionState.active)).outcome == Outcome.active
    kept_out = result(VersionState.inactive, inactive_by_retention=True)
    assert finished_outcome(d, "wf", kept_out).outcome == Outcome.active  # no verdict
    expired = finished_outcome(
        d,
        "wf",
        result(VersionState.inactive, message="expired", tests=arch_tests(AssessmentState.passed)),
    )
    assert (expired.outcome, expired.detail) == (Outcome.failed, "expired")


def test_a_settled_pipeline_gives_its_first_failed_check_or_its_fault() -> None:
    d = definition()
    failed = PipelineSettled(
        image=d.image,
        serial="s",
        phase=Phase.waiting_for_retry,
        details="checks failed on x86_64",
        tests=arch_tests(AssessmentState.passed, AssessmentState.failed, AssessmentState.failed),
    )
    out = settled_outcome(d, "wf", failed)
    assert (out.outcome, out.detail, out.evidence) == (
        Outcome.failed,
        "x86_64 on vm: c1 failed",
        "evidence 1",
    )
    broken = failed.model_copy(
        update={"phase": Phase.machinery_failed, "tests": arch_tests(fault="LXD gone")}
    )
    out = settled_outcome(d, "wf", broken)
    assert (out.outcome, out.detail) == (
        Outcome.machinery_failed,
        "x86_64: test machinery failed: LXD gone",
    )
    allowed = settled_outcome(definition(allow_failure=True), "wf", broken)
    assert allowed.outcome == Outcome.allowed_failure
    assert allowed.detail.startswith("machinery-failed: ")


@pytest.mark.parametrize(
    ("outcomes", "problems", "ok"),
    [
        ([Outcome.active, Outcome.unchanged, Outcome.allowed_failure], [], True),
        ([Outcome.in_progress, Outcome.unknown_image], [], True),
        ([Outcome.active, Outcome.failed], [], False),
        ([Outcome.machinery_failed], [], False),
        ([Outcome.active], [DefinitionProblem(file="x.yaml", field="os", reason="r")], False),
        ([], [], True),
    ],
)
def test_ok_means_nothing_failed_and_no_bad_file(
    outcomes: list[Outcome], problems: list[DefinitionProblem], ok: bool
) -> None:
    report = RefreshReport(
        refresh_id="r",
        started_at=T0,
        images=[ImageOutcome(image=f"i{n}", outcome=o) for n, o in enumerate(outcomes)],
        problems=problems,
    )
    assert report.ok is ok


def test_the_summary_table_has_a_line_per_image_and_bad_file() -> None:
    report = RefreshReport(
        refresh_id="icefloe-refresh:x",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=12.5),
        images=[
            ImageOutcome(image="b:2:default", outcome=Outcome.active, serial="20261203-030000"),
            ImageOutcome(image="a:1:default", outcome=Outcome.unchanged, serial="20261201-030000"),
            ImageOutcome(
                image="c:3:default",
                outcome=Outcome.failed,
                serial="20261203-030000",
                detail="x86_64 on vm: dns failed",
                evidence="no answer\nfrom 198.51.100.1",
            ),
        ],
        problems=[DefinitionProblem(file="bad.yaml", field="arches.0", reason="unknown arch")],
    )
    assert report.text().splitlines() == [
        "refresh icefloe-refresh:x: 1 active, 1 failed, 1 unchanged, 1 bad definitions",
        "  a:1:default  unchanged         unchanged since 20261201-030000",
        "  b:2:default  active            20261203-030000 is active",
        "  c:3:default  failed            20261203-030000: x86_64 on vm: dns failed",
        "      no answer",
        "      from 198.51.100.1",
        "  bad.yaml: arches.0: unknown arch",
        "FAILED in 12.5s",
    ]


def test_each_rule_has_a_schedule_id_of_its_own() -> None:
    rules = ["0 3 * * *", "*/5 * * * *", "5 * * * *", "1-5 * * * *", "1,5 * * * *", "every 6h"]
    ids = [schedule_id(parse_rule(r).text) for r in rules]
    assert ids[0] == "icefloe-refresh-0-3-x-x-x" and ids[-1] == "icefloe-refresh-every-6h"
    assert len(set(ids)) == len(ids), ids
