"""The catalog's vocabulary: versions, their files, states, assessments and events, as
the image server's API and its clients (activities, CLI) exchange them."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from core.arch import LxdArch
from core.inputs import VersionInputs
from core.manifest import ManifestDiff, Package
from core.spec import CheckKey, Serial, SpecField


class VersionState(StrEnum):
    created = "created"
    testing = "testing"
    active = "active"
    inactive = "inactive"
    # Taken back by an operator (server_api.revoke): in no channel, its files not served;
    # active again only through a new test run or a forced promotion.
    revoked = "revoked"


class Channel(StrEnum):
    """A release channel: a feed that lists the versions in the state of the same name."""

    testing = "testing"
    active = "active"


class Flavour(StrEnum):
    """Which client a private feed serves: the metadata item's ftype differs, nothing else."""

    lxd = "lxd"
    incus = "incus"


class AssessmentState(StrEnum):
    running = "running"
    passed = "passed"
    failed = "failed"
    # The check does not apply to this image or host (ipv6 on a network without IPv6,
    # cloud-init in an image without it); the evidence says why. It satisfies the gate.
    not_applicable = "not_applicable"


# The results a required check may have for the gate to let the version through; both final.
SATISFIED = frozenset({AssessmentState.passed, AssessmentState.not_applicable})


class FileType(StrEnum):
    """simplestreams item ftypes Icefloe publishes."""

    metadata = "lxd.tar.xz"
    squashfs = "squashfs"
    # The packages in the rootfs (core.manifest), as Ubuntu's feeds list them. Optional:
    # a version published without one (older clients) is still whole.
    manifest = "manifest"


# The file name each type has in a build's output and in the API's listings.
FILE_NAMES: dict[FileType, str] = {
    FileType.metadata: "lxd.tar.xz",
    FileType.squashfs: "rootfs.squashfs",
    FileType.manifest: "rootfs.manifest",
}


class BuiltFile(BaseModel):
    """One file a build produced, as declared to the image server."""

    ftype: FileType
    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class BuildRecord(BaseModel):
    """Where and when one arch was built, and its builder's version: the version's build
    provenance (core.provenance) says what the build reported, nothing more."""

    host: str = Field(min_length=1, max_length=253)
    tool_version: str | None = Field(None, max_length=200)
    started_at: datetime
    finished_at: datetime


class ArchFiles(BaseModel):
    """The files of one arch of a version: a metadata tarball, a rootfs and, optionally,
    the rootfs's package manifest; and how its build went, if the builder said."""

    arch: LxdArch
    files: list[BuiltFile]
    built: BuildRecord | None = None


# The pipeline's Temporal workflow id (icefloe:<image>:<serial> is under 250 characters);
# it shows in the public API, so it is bounded.
WorkflowId = Annotated[str, Field(min_length=1, max_length=512)]


class VersionCreate(BaseModel):
    """Publish request: the files must already be uploaded; the server checks them."""

    spec: SpecField
    serial: Serial
    arches: list[ArchFiles] = Field(min_length=1)
    workflow_id: WorkflowId | None = None
    # What it was built from; kept so the next pipeline can tell whether anything changed.
    inputs: VersionInputs | None = None
    # Publish even if its packages and definition equal the newest active version's.
    force: bool = False


Reason = Annotated[str, Field(min_length=1, max_length=500, pattern=r"\S", description="why")]


class TransitionRequest(BaseModel):
    to: VersionState
    reason: Reason
    from_state: VersionState | None = Field(
        None,
        description="move only if the version is in this state when the server moves it "
        "(else 409 naming the state it is in): a compare-and-set for callers that decided "
        "on a state they read earlier",
    )
    workflow_id: WorkflowId | None = None
    # Operators only: promote without every required check passed; recorded as forced.
    force: bool = False

    @model_validator(mode="after")
    def _force_only_promotes(self) -> "TransitionRequest":
        if self.force and self.to != VersionState.active:
            raise ValueError("force only applies to a promotion (to: active)")
        return self


class RevokeRequest(BaseModel):
    reason: Reason


class HoldRequest(BaseModel):
    reason: Reason


class HoldView(BaseModel):
    """An image's hold (an incident freeze): no version of it is promoted until released."""

    image: str
    held_by: str
    reason: str
    held_at: datetime


class AssessmentReport(BaseModel):
    """One check result for one (version, arch, check, instance type, host)."""

    arch: LxdArch
    check: CheckKey
    instance_type: Literal["container", "virtual-machine"] = "container"
    host: str = Field(min_length=1, max_length=253)
    # The daemon it ran on (`lxd 5.0.2`, `incus 6.0.4`), when the tester says.
    server: str | None = Field(default=None, max_length=100)
    state: AssessmentState
    evidence: str = Field(default="", max_length=4000)
    duration_s: float = Field(default=0.0, ge=0)


class AssessmentView(AssessmentReport):
    updated_at: datetime
    failures: int = 0  # failed results recorded for it, also ones a retry turned into a pass


class DeltaState(StrEnum):
    """A version arch's delta from an earlier version's squashfs, made after the publish."""

    pending = "pending"  # not tried yet (or being made)
    made = "made"
    none = "none"  # tried once: no base, xdelta3 failed, or no smaller than the squashfs


class ArchView(BaseModel):
    arch: LxdArch
    fingerprint: str
    files: list[BuiltFile]
    delta: DeltaState = DeltaState.pending
    delta_base: str | None = None  # the serial the delta patches, when made
    delta_detail: str = ""  # why there is none


class VersionView(BaseModel):
    """A version as the API shows it: never a secret, always the computed fingerprints."""

    image: str
    serial: str
    state: VersionState
    arches: list[ArchView]
    assessments: list[AssessmentView]
    created_at: datetime
    state_changed_at: datetime
    # The workflow of the newest event that named one: the pipeline driving this version.
    workflow_id: str | None = None
    # Set once garbage collection deleted the version's files.
    files_deleted_at: datetime | None = None
    inputs: VersionInputs | None = None


class RevokeResult(BaseModel):
    """The revoked version, and the earlier one restored to active in its place, if any."""

    revoked: VersionView
    restored: VersionView | None = None


class ArchPackages(BaseModel):
    """One arch's packages and what changed since `previous`: the newest older version of
    the image with a manifest of this arch whose files are kept. `packages` is None when
    the version has no manifest (published without one, or its files were collected)."""

    arch: LxdArch
    packages: list[Package] | None
    previous: str | None = None
    diff: ManifestDiff | None = None


class VersionPackages(BaseModel):
    """A version's package manifests, per arch, with the differences from the previous."""

    image: str
    serial: str
    arches: list[ArchPackages]


class EventView(BaseModel):
    """One stored state transition."""

    id: int
    actor: str
    from_state: VersionState | None
    to_state: VersionState
    reason: str
    workflow_id: str | None
    forced: bool
    at: datetime


# Durations the server adds to or takes from "now": bounded so the date stays representable.
Seconds = Annotated[int, Field(ge=0, le=100 * 365 * 86400)]


class AbandonRequest(BaseModel):
    older_than_s: Seconds = Field(description="running results not updated for this long")


class GcRequest(BaseModel):
    grace_s: Seconds = Field(description="how long a version stays inactive before its files go")


class GcResult(BaseModel):
    """What garbage collection deleted: versions whose files went, and the files themselves."""

    versions: list[str]  # "image serial"
    files: list[str]  # sha256
    bytes: int


class ImageCheckReport(BaseModel):
    """A pipeline found the image's inputs unchanged: nothing built, no version created."""

    unchanged_since: Serial  # the newest active version, whose inputs these equal
    workflow_id: WorkflowId | None = None


class ImageCheckView(ImageCheckReport):
    """The newest such check of an image: "checked at, unchanged since <serial>"."""

    image: str
    checked_at: datetime


def _in_utc(when: datetime) -> datetime:
    """A date or datetime without a zone is UTC; one with a zone is converted to UTC."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# A date (`2026-12-10`, its 00:00 UTC) or an ISO datetime, UTC unless it names a zone.
UtcDateTime = Annotated[datetime, AfterValidator(_in_utc)]
ImageName = Annotated[str, Field(pattern=r"^[a-z0-9.+-]+:[a-z0-9.+-]+:[a-z0-9.+-]+$")]


class KnownFailureCreate(BaseModel):
    """An operator's word that a check of an image fails for a known reason: until `until`
    the check still runs and its result is shown, but the gate does not require it. The
    same image, check and arch again replaces the earlier one (a new date, reason, link)."""

    image: ImageName
    check: CheckKey
    arch: LxdArch | None = Field(None, description="null: every arch of the image")
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S")
    link: str | None = Field(None, max_length=2000, pattern=r"^https?://\S+$")
    until: UtcDateTime = Field(description="a date (its 00:00 UTC) or an ISO datetime")


class KnownFailureView(KnownFailureCreate):
    id: int
    actor: str
    created_at: datetime
    expired: bool  # its date has passed: the check is required again

    def says(self) -> str:
        """One line for events and the CLI: which check, where, why, until when."""
        where = self.arch or "every arch"
        link = f" {self.link}" if self.link else ""
        until = f"{self.until:%Y-%m-%d %H:%M} UTC"
        return f"{self.check} on {where} until {until} ({self.reason}{link})"


class GateView(BaseModel):
    """The promotion gate's view of a version: per arch the required checks neither
    satisfied nor covered by an active known failure, and the known failures it relies on."""

    unmet: dict[str, list[str]]
    relied_on: list[KnownFailureView] = []


class CheckRate(BaseModel):
    """One check's results over an image's recent versions, every arch: each failed run
    counts, also one a retry later passed, so a flaky check shows."""

    check: str
    passed: int
    failed: int
    not_applicable: int
    pass_rate: float | None  # passed / (passed + failed); None if it never ran to a verdict
    known_failures: list[KnownFailureView] = []  # the active ones naming this check


class ImageChecksView(BaseModel):
    image: str
    versions: list[str]  # the serials counted, newest first
    checks: list[CheckRate]
