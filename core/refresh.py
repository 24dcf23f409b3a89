"""A refresh: every image of the catalogue (or those asked for) through its pipeline, with
bounded concurrency, ending in a report that says per image what became of it.

The report is the Refresh workflow's result, its summary in the UI, what `icefloe refresh`
prints (and its exit code) and what `GET /api/v1/refreshes/{id}` answers.
"""

import re
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from core.catalog import AssessmentState, VersionState
from core.catalogue import Definition, DefinitionProblem
from core.pipeline import ArchTestResult, Phase, PipelineResult

REFRESH_WORKFLOW = "Refresh"
# How many pipelines a refresh runs at once unless ICEFLOE_REFRESH_MAX_PARALLEL says otherwise.
DEFAULT_MAX_PARALLEL = 8
SCHEDULE_PREFIX = "icefloe-refresh-"
SETTLED_SIGNAL = "pipeline_settled"


class RefreshInput(BaseModel):
    images: list[str] | None = None  # image names (`busybox:1.35:default`); None: all
    force: bool = False  # rebuild even what is unchanged
    # None: the control worker's ICEFLOE_REFRESH_MAX_PARALLEL.
    max_parallel: int | None = Field(default=None, gt=0)
    # A schedule's rule text: refresh only the images whose definition has that rule.
    rule: str | None = None


class PipelineSettled(BaseModel):
    """What a child pipeline tells its refresh when it starts waiting for a retry: the
    refresh reports it and moves on, the pipeline keeps waiting on its own."""

    image: str
    serial: str
    phase: str
    details: str
    tests: list[ArchTestResult] = []


class Outcome(StrEnum):
    unchanged = "unchanged"  # inputs equal the newest active version's: nothing built
    active = "active"  # rebuilt and active
    failed = "failed"  # a check failed: the image's verdict
    machinery_failed = "machinery-failed"  # the test machinery (or the pipeline) failed
    allowed_failure = "allowed-failure"  # an allow_failure image that failed
    in_progress = "in-progress"  # a pipeline for it was already running: not doubled
    unknown_image = "unknown-image"  # asked for by name, not in the catalogue


FAILING = frozenset({Outcome.failed, Outcome.machinery_failed})


class ImageOutcome(BaseModel):
    image: str
    outcome: Outcome
    serial: str = ""  # the version built, or (unchanged) the one it equals
    workflow_id: str = ""
    detail: str = ""  # the first failed check, the fault, or the pipeline's message
    evidence: str = ""  # the first failed check's evidence


class RefreshReport(BaseModel):
    refresh_id: str
    started_at: datetime
    finished_at: datetime | None = None  # None while it runs
    images: list[ImageOutcome] = []
    problems: list[DefinitionProblem] = []
    pending: list[str] = []  # images whose pipeline has not settled yet

    @property
    def ok(self) -> bool:
        """No image failed (allowed failures aside) and every definition file is valid."""
        return not self.problems and not any(i.outcome in FAILING for i in self.images)

    def counts(self) -> str:
        tally: dict[str, int] = {}
        for i in self.images:
            tally[i.outcome] = tally.get(i.outcome, 0) + 1
        parts = [f"{n} {o}" for o, n in sorted(tally.items())]
        parts += [f"{len(self.pending)} running"] if self.pending else []
        parts += [f"{len(self.problems)} bad definitions"] if self.problems else []
        return ", ".join(parts) or "nothing to refresh"

    def text(self) -> str:
        """The summary table: one line per image, then each bad definition file."""
        width = max((len(i.image) for i in self.images), default=0)
        lines = [f"refresh {self.refresh_id}: {self.counts()}"]
        for i in sorted(self.images, key=lambda i: i.image):
            lines.append(f"  {i.image:<{width}}  {i.outcome:<16}  {describe(i)}".rstrip())
            lines += [f"      {line}" for line in i.evidence.strip().splitlines()]
        lines += [f"  {image:<{width}}  running" for image in self.pending]
        for p in self.problems:
            lines.append(f"  {p.file}: {p.text}")
        if self.finished_at:
            took = (self.finished_at - self.started_at).total_seconds()
            lines.append(f"{'ok' if self.ok else 'FAILED'} in {took:.1f}s")
        return "\n".join(lines)


def describe(i: ImageOutcome) -> str:
    if i.outcome == Outcome.unchanged:
        return f"unchanged since {i.serial}"
    if i.outcome == Outcome.active:
        return f"{i.serial} is active"
    if i.outcome == Outcome.unknown_image:
        return "no definition in the catalogue has this image"
    if i.outcome == Outcome.in_progress:
        return f"already running: {i.workflow_id}"
    return f"{i.serial}: {i.detail}" if i.serial else i.detail


def first_failure(tests: list[ArchTestResult]) -> tuple[str, str]:
    """The first arch's fault or failed check (arch order), and its evidence."""
    for test in sorted(tests, key=lambda t: t.arch):
        if test.fault:
            return f"{test.arch}: test machinery failed: {test.fault}", ""
        for check in test.checks:
            if check.state == AssessmentState.failed:
                return f"{test.arch} on {test.host or '?'}: {check.check} failed", check.evidence
    return "", ""


def failing(
    definition: Definition,
    outcome: Outcome,
    serial: str,
    workflow_id: str,
    detail: str,
    evidence: str = "",
) -> ImageOutcome:
    """A failure, or an allowed one if the definition says its failures are allowed."""
    return ImageOutcome(
        image=definition.image,
        outcome=Outcome.allowed_failure if definition.allow_failure else outcome,
        serial=serial,
        workflow_id=workflow_id,
        detail=f"{outcome}: {detail}" if definition.allow_failure else detail,
        evidence=evidence,
    )


def settled_outcome(definition: Definition, workflow_id: str, s: PipelineSettled) -> ImageOutcome:
    """A pipeline that waits for a retry: its verdict or its machinery's fault."""
    detail, evidence = first_failure(s.tests)
    outcome = Outcome.machinery_failed if s.phase == Phase.machinery_failed else Outcome.failed
    return failing(definition, outcome, s.serial, workflow_id, detail or s.details, evidence)


def finished_outcome(definition: Definition, workflow_id: str, r: PipelineResult) -> ImageOutcome:
    """A pipeline that ended: unchanged, active (retention's inactive is no verdict), or not."""
    if r.state is None:
        return ImageOutcome(
            image=r.image,
            outcome=Outcome.unchanged,
            serial=r.unchanged_since or "",
            workflow_id=workflow_id,
        )
    if r.state == VersionState.active or r.inactive_by_retention:
        return ImageOutcome(
            image=r.image,
            outcome=Outcome.active,
            serial=r.serial,
            workflow_id=workflow_id,
            detail=r.message,
        )
    detail, evidence = first_failure(r.tests)
    return failing(definition, Outcome.failed, r.serial, workflow_id, detail or r.message, evidence)


def schedule_id(rule: str) -> str:
    """`icefloe-refresh-0-3-x-x-x`, `icefloe-refresh-every-6h`: one Schedule per rule text,
    each character of cron's syntax spelt by its own letter so two rules never share an id."""
    spelt = rule.translate(str.maketrans("*/,-", "xsct"))
    return SCHEDULE_PREFIX + re.sub(r"[^a-z0-9]+", "-", spelt.lower()).strip("-")
