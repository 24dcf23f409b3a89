"""Pydantic models that cross a process boundary: HTTP API, Temporal payloads, builder output."""

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

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
