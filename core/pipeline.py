"""Inputs and results of the pipeline workflow and its activities (one model each)."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from core.arch import LxdArch
from core.catalog import SATISFIED, ArchFiles, AssessmentState, VersionState, VersionView
from core.inputs import VersionInputs
from core.spec import Serial, SpecField

DAY_S = 86400


class Phase(StrEnum):
    """Where a pipeline is: the `progress` query, the IcefloePhase search attribute and the
    CLI all say one of these (`waiting-for-worker:<arches>` while no worker polls)."""

    queued = "queued"
    looking_up = "looking-up"  # asking the catalog what the version already has
    building = "building"
    publishing = "publishing"
    testing = "testing"
    waiting_for_retry = "waiting-for-retry"  # a check failed: the image's verdict
    machinery_failed = "machinery-failed"  # the test machinery failed, not the image
    retrying = "retrying"
    promoting = "promoting"
    done = "done"
    cancelled = "cancelled"
    waiting_for_worker = "waiting-for-worker"
    # The version's inputs equal those of the newest active version: nothing built or published.
    unchanged = "unchanged"
    # An arch worker is at its ICEFLOE_WORKER_MAX_BUILDS / _MAX_TESTS: the work waits its turn.
    waiting_for_slot = "waiting-for-slot"
    # Every check passed, but an operator holds the image: promotion waits for the release.
    held = "held"

    def on(self, arches: list[str]) -> str:
        """The phase with the arches it concerns, as `waiting-for-worker:i686,x86_64`."""
        return f"{self.value}:{','.join(sorted(arches))}"


# Phases in which a pipeline waits for an operator's (or CI's) retry until the version expires.
AWAITING_RETRY = frozenset({Phase.waiting_for_retry, Phase.machinery_failed})


class PipelineInput(BaseModel):
    spec: SpecField
    serial: Serial
    # A version that has not passed every check after this long in testing goes inactive.
    expire_after_s: int = Field(default=3 * DAY_S, gt=0)
    # Work an arch's queue has not picked up after this long is reported as waiting for a worker.
    worker_wait_s: int = Field(default=300, gt=0)
    # Build and publish even when the inputs equal those of the newest active version.
    force: bool = False
    # While the image is held, how often the pipeline asks whether it was released.
    hold_poll_s: int = Field(default=30, gt=0)


def pipeline_workflow_id(image: str, serial: str) -> str:
    """One workflow per image version, so a second trigger finds the first."""
    return f"icefloe:{image}:{serial}"


class VersionRef(BaseModel):
    image: str
    serial: Serial


class VersionStatus(BaseModel):
    """What the catalog already has of a version, so a re-run redoes only what is missing."""

    version: VersionView | None
    missing: dict[str, list[str]] = {}  # per arch, required checks without a passed result

    def arch_files(self) -> dict[str, ArchFiles]:
        arches = self.version.arches if self.version else []
        return {a.arch: ArchFiles(arch=a.arch, files=a.files) for a in arches}


class BuildInput(BaseModel):
    spec: SpecField
    serial: Serial
    arch: LxdArch


class PublishInput(BaseModel):
    spec: SpecField
    serial: Serial
    arches: list[ArchFiles]
    workflow_id: str
    inputs: VersionInputs | None = None
    force: bool = False  # publish even if the server finds it unchanged


class InputsCheck(BaseModel):
    """A version's inputs, compared with the newest active version's before building."""

    image: str
    inputs: VersionInputs
    workflow_id: str


class ArchTestInput(BaseModel):
    spec: SpecField
    serial: Serial
    arch: LxdArch
    fingerprint: str
    workflow_id: str


class CheckOutcome(BaseModel):
    check: str
    state: AssessmentState
    evidence: str = ""
    duration_s: float = 0.0
    skipped: bool = False  # passed (or did not apply) in an earlier run; not run again


class ArchTestResult(BaseModel):
    arch: LxdArch
    host: str
    checks: list[CheckOutcome]
    # Set when the test machinery failed on every attempt: then no verdict was reached.
    fault: str = ""

    @property
    def passed(self) -> bool:
        return not self.fault and all(c.state in SATISFIED for c in self.checks)


class PromoteInput(BaseModel):
    image: str
    serial: Serial
    workflow_id: str


class RetireInput(BaseModel):
    """Move a version in testing to inactive, with the reason the catalog records."""

    image: str
    serial: Serial
    reason: str
    workflow_id: str


class OperatorRequest(BaseModel):
    """Who asks a pipeline to act, and why: carried into the catalog's events."""

    actor: str = Field(min_length=1)
    reason: str = ""

    def says(self, action: str) -> str:
        return f"{action} by {self.actor}" + (f": {self.reason}" if self.reason else "")


class PipelineProgress(BaseModel):
    phase: str  # a Phase, or Phase.waiting_for_worker.on(arches)
    waiting_for_worker: list[str] = []
    tests: dict[str, ArchTestResult] = {}
    testing_deadline: datetime | None = None
    details: str = ""


class PipelineResult(BaseModel):
    image: str
    serial: str
    state: VersionState | None  # None: unchanged, no version was created
    tests: list[ArchTestResult]
    message: str
    # Every check passed, but newer versions hold every active slot: the server's retention
    # made this one inactive in the promotion itself (not a verdict about the image).
    inactive_by_retention: bool = False
    # The newest active version whose inputs this one's equal (phase `unchanged`).
    unchanged_since: str | None = None


class PruneInput(BaseModel):
    """What the scheduled pruning looks at; `image` narrows it to one image."""

    expire_after_s: int = Field(default=3 * DAY_S, ge=0)
    stuck_after_s: int = Field(default=3600, ge=0)  # a running result older than this is stuck
    image: str | None = None


class PruneCandidate(BaseModel):
    image: str
    serial: str
    workflow_id: str
    past_deadline: bool  # in testing too long and some required check never passed
    has_running: bool  # some result still says running


class AbandonInput(BaseModel):
    image: str
    serial: str
    older_than_s: int


class PruneResult(BaseModel):
    expired: list[str] = []
    left_to_live_pipelines: list[str] = []
    abandoned_results: int = 0
