"""Pydantic models that cross a process boundary: HTTP API, Temporal payloads, builder output."""

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from core.arch import LxdArch

_NAME = r"^[a-z0-9][a-z0-9.+-]{0,62}$"
_SERIAL = re.compile(r"^(\d{8})[0-9A-Za-z._-]{0,32}$")


def _check_serial(serial: str) -> str:
    """LXD silently drops versions whose name does not start with a YYYYMMDD date."""
    m = _SERIAL.match(serial)
    if not m:
        raise ValueError("serial must start with YYYYMMDD, then up to 32 of [0-9A-Za-z._-]")
    try:
        date(int(m[1][:4]), int(m[1][4:6]), int(m[1][6:]))
    except ValueError:
        raise ValueError(f"serial starts with {m[1]!r}, which is not a date") from None
    return serial


Serial = Annotated[str, AfterValidator(_check_serial)]
Name = Annotated[str, Field(pattern=_NAME)]
# A check's assessment name: the check, with `@privileged` when it ran in a privileged container.
CheckKey = Annotated[str, Field(pattern=_NAME[:-1] + "(@privileged)?$")]


class VersionState(StrEnum):
    created = "created"
    testing = "testing"
    active = "active"
    inactive = "inactive"


class Channel(StrEnum):
    """A release channel: a feed that lists the versions in the state of the same name."""

    testing = "testing"
    active = "active"


class Flavour(StrEnum):
    """Which client a private feed serves: the metadata item's ftype differs, nothing else."""

    lxd = "lxd"
    incus = "incus"


class TokenScope(StrEnum):
    """publisher: CI and workers (publish, test, promote); operator: that plus forced
    actions, garbage collection and access management."""

    publisher = "publisher"
    operator = "operator"


class AssessmentState(StrEnum):
    running = "running"
    passed = "passed"
    failed = "failed"


class FileType(StrEnum):
    """simplestreams item ftypes Icefloe publishes."""

    metadata = "lxd.tar.xz"
    squashfs = "squashfs"


class InstanceKind(StrEnum):
    """How a test container runs. Privileged results are recorded as `<check>@privileged`."""

    unprivileged = "unprivileged"
    privileged = "privileged"


BuiltinKind = Literal["boots", "init", "ipv4", "ipv6", "dns", "gateway", "stop"]

# Seconds each built-in check may take; polled checks poll until then, never sleep blindly.
BUILTIN_TIMEOUTS: dict[str, float] = {
    "boots": 30,
    "init": 120,
    "ipv4": 60,
    "ipv6": 60,
    "dns": 30,
    "gateway": 30,
    "stop": 60,
}


class BuiltinCheck(BaseModel):
    """A check Icefloe knows how to run; its name is its kind."""

    model_config = ConfigDict(extra="forbid")

    kind: BuiltinKind
    timeout_s: float = Field(default=0, ge=0, le=1800)  # 0: the kind's default

    @property
    def name(self) -> str:
        return self.kind

    @property
    def deadline_s(self) -> float:
        return self.timeout_s or BUILTIN_TIMEOUTS[self.kind]


class CommandCheck(BaseModel):
    """A user check: a shell command inside the instance, its expected exit code and output."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["command"] = "command"
    name: Name
    command: str = Field(min_length=1)
    expect_exit: int = Field(default=0, ge=0, le=255)
    stdout_pattern: str | None = None  # re.search against stdout
    timeout_s: float = Field(default=60, gt=0, le=1800)

    @field_validator("stdout_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return pattern

    @property
    def deadline_s(self) -> float:
        return self.timeout_s


CheckSpec = Annotated[BuiltinCheck | CommandCheck, Field(discriminator="kind")]
DEFAULT_CHECKS: tuple[str, ...] = ("boots", "init", "ipv4", "ipv6", "dns", "gateway", "stop")


def _expand_checks(value: object) -> object:
    """YAML shorthand: a bare string is a built-in check; `default` is the whole default suite."""
    if not isinstance(value, list):
        return value
    out: list[object] = []
    for item in value:
        if item == "default":
            out.extend({"kind": k} for k in DEFAULT_CHECKS)
        elif isinstance(item, str):
            out.append({"kind": item})
        elif isinstance(item, dict) and "command" in item and "kind" not in item:
            out.append({"kind": "command", **item})
        else:
            out.append(item)
    return out


def _default_suite() -> list[BuiltinCheck | CommandCheck]:
    return [BuiltinCheck(kind=k) for k in DEFAULT_CHECKS]  # type: ignore[arg-type]


class ImageSpec(BaseModel):
    """What to build and how to prove it: one image (os, release, variant) across arches."""

    model_config = ConfigDict(extra="forbid")

    os: Name
    release: Name
    variant: Name = "default"
    release_title: str = ""
    aliases: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9./_-]{0,62}$")]] = []
    requirements: dict[str, str] = {}
    arches: list[LxdArch] = Field(min_length=1)
    builder: Literal["busybox", "debootstrap", "distrobuilder"] = "busybox"
    # dhcp: eth0 gets an address by DHCP at boot; none: no network set-up at all.
    network: Literal["dhcp", "none"] = "dhcp"
    # debootstrap: extra packages, and the mirror (default: the distribution's own).
    packages: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.+-]*$")]] = []
    mirror: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    # distrobuilder / lxd-imagebuilder: the image definition itself, so it travels with the spec.
    distrobuilder: dict[str, Any] | None = None
    # The check suite every arch must pass before the server lets the version go active.
    checks: Annotated[list[CheckSpec], BeforeValidator(_expand_checks)] = Field(
        default_factory=_default_suite, min_length=1
    )
    # Also run the whole suite in a privileged container (unprivileged always runs).
    privileged: bool = False

    @field_validator("checks")
    @classmethod
    def _unique_names(cls, checks: list[BuiltinCheck | CommandCheck]) -> list:
        names = [c.name for c in checks]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"check names must be unique; more than once: {', '.join(twice)}")
        return checks

    @model_validator(mode="after")
    def _builder_options(self) -> "ImageSpec":
        if self.builder == "distrobuilder" and not self.distrobuilder:
            raise ValueError("builder distrobuilder needs a `distrobuilder` image definition")
        if self.builder != "distrobuilder" and self.distrobuilder:
            raise ValueError(f"`distrobuilder` is for builder distrobuilder, not {self.builder}")
        if self.builder != "debootstrap" and (self.packages or self.mirror):
            raise ValueError(f"`packages`/`mirror` are for builder debootstrap, not {self.builder}")
        return self

    @property
    def name(self) -> str:
        """Catalog key of the image; feed products add the Debian arch name."""
        return f"{self.os}:{self.release}:{self.variant}"

    @property
    def instance_kinds(self) -> list[InstanceKind]:
        kinds = [InstanceKind.unprivileged]
        return [*kinds, InstanceKind.privileged] if self.privileged else kinds

    @property
    def required_checks(self) -> list[str]:
        """The names the catalog requires per arch: `check`, and `check@privileged` if asked."""
        return [check_key(c.name, kind) for kind in self.instance_kinds for c in self.checks]


def check_key(check: str, kind: InstanceKind) -> str:
    """The assessment name of a check in a kind of instance."""
    return check if kind == InstanceKind.unprivileged else f"{check}@{kind}"


class BuiltFile(BaseModel):
    """One file a build produced, as declared to the image server."""

    ftype: FileType
    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class ArchFiles(BaseModel):
    """The files of one arch of a version: a metadata tarball and a rootfs."""

    arch: LxdArch
    files: list[BuiltFile]


class VersionCreate(BaseModel):
    """Publish request: the files must already be uploaded; the server checks them."""

    image: ImageSpec
    serial: Serial
    arches: list[ArchFiles] = Field(min_length=1)
    workflow_id: str | None = None


class TransitionRequest(BaseModel):
    to: VersionState
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S", description="why")
    workflow_id: str | None = None
    # Operators only: promote without every required check passed; recorded as forced.
    force: bool = False

    @model_validator(mode="after")
    def _force_only_promotes(self) -> "TransitionRequest":
        if self.force and self.to != VersionState.active:
            raise ValueError("force only applies to a promotion (to: active)")
        return self


class AssessmentReport(BaseModel):
    """One check result for one (version, arch, check, instance type, host)."""

    arch: LxdArch
    check: CheckKey
    instance_type: Literal["container", "virtual-machine"] = "container"
    host: str = Field(min_length=1, max_length=253)
    state: AssessmentState
    evidence: str = Field(default="", max_length=4000)
    duration_s: float = Field(default=0.0, ge=0)


class Assessment(AssessmentReport):
    updated_at: datetime


class ArchView(BaseModel):
    arch: LxdArch
    fingerprint: str
    files: list[BuiltFile]


class VersionView(BaseModel):
    """A version as the API shows it: never a secret, always the computed fingerprints."""

    image: str
    serial: str
    state: VersionState
    arches: list[ArchView]
    assessments: list[Assessment]
    created_at: datetime
    state_changed_at: datetime
    # The workflow of the newest event that named one: the pipeline driving this version.
    workflow_id: str | None = None
    # Set once garbage collection deleted the version's files.
    files_deleted_at: datetime | None = None


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


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scope: TokenScope = TokenScope.publisher
    expires_in_s: Annotated[Seconds, Field(gt=0)] | None = Field(
        default=None, description="default: never"
    )


class TokenView(BaseModel):
    """A token as listed: never the secret, which only the creation answer carries."""

    id: int
    name: str
    scope: TokenScope
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenIssued(TokenView):
    token: str = Field(description="shown this once; the server keeps only its sha256")


class CredentialCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    channel: Channel = Channel.active
    flavour: Flavour = Flavour.lxd
    expires_in_s: Annotated[Seconds, Field(gt=0)] | None = Field(
        default=None, description="default: never"
    )


class CredentialUpdate(BaseModel):
    channel: Channel


class CredentialView(BaseModel):
    id: int
    name: str
    channel: Channel
    flavour: Flavour
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class CredentialIssued(CredentialView):
    feed_path: str = Field(description="the feed's base path, secret included; shown this once")
