"""Pydantic models that cross a process boundary: HTTP API, Temporal payloads, builder output."""

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

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


class ImageSpec(BaseModel):
    """What to build: one image (os, release, variant) across arches."""

    os: Name
    release: Name
    variant: Name = "default"
    release_title: str = ""
    aliases: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9./_-]{0,62}$")]] = []
    requirements: dict[str, str] = {}
    arches: list[LxdArch] = Field(min_length=1)
    builder: Literal["busybox"] = "busybox"
    # Checks every arch must pass before the server lets the version go active.
    checks: list[Name] = Field(default=["boots"], min_length=1)

    @property
    def name(self) -> str:
        """Catalog key of the image; feed products add the Debian arch name."""
        return f"{self.os}:{self.release}:{self.variant}"


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
    reason: str = Field(min_length=1, max_length=500)
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
    check: Name
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


class AbandonRequest(BaseModel):
    older_than_s: int = Field(ge=0, description="running results not updated for this long")


class AbandonResult(BaseModel):
    abandoned: int


class GcRequest(BaseModel):
    grace_s: int = Field(ge=0, description="how long a version stays inactive before its files go")


class GcResult(BaseModel):
    """What garbage collection deleted: versions whose files went, and the files themselves."""

    versions: list[str]  # "image serial"
    files: list[str]  # sha256
    bytes: int


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scope: TokenScope = TokenScope.publisher
    expires_in_s: int | None = Field(default=None, gt=0, description="default: never")


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
    expires_in_s: int | None = Field(default=None, gt=0, description="default: never")


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
