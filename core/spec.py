"""An image and how to prove it: the spec an image definition file describes, its checks.

The domain's innermost module: it imports nothing of Icefloe's but arch names.
"""

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from core.arch import LxdArch

_NAME = r"^[a-z0-9][a-z0-9.+-]{0,62}$"
# ASCII digits only: `\d` takes any Unicode digit, and those sort above every real serial.
_SERIAL = re.compile(r"^([0-9]{8})[0-9A-Za-z._-]{0,32}$")


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


def serial_at(when: datetime) -> str:
    """A serial LXD orders correctly: YYYYMMDD-HHMMSS (UTC)."""
    return when.strftime("%Y%m%d-%H%M%S")


Name = Annotated[str, Field(pattern=_NAME)]
# A check's assessment name: the check, with `@privileged` when it ran in a privileged container.
CheckKey = Annotated[str, Field(pattern=_NAME[:-1] + "(@privileged)?$")]


# The LXD instance types an image may be built for.
InstanceType = Literal["container", "virtual-machine"]


class Privilege(StrEnum):
    """How a test container runs. Privileged results are recorded as `<check>@privileged`."""

    unprivileged = "unprivileged"
    privileged = "privileged"


# The checks Icefloe knows how to run, in the order of the default suite; the activities
# hold what each does and its default timeout. Those that need what an image may lack
# (cloud-init, systemd's journal, IPv6 on the network) pass as "not applicable" without it.
BuiltinKind = Literal[
    "boots",
    "init",
    "ipv4",
    "ipv6",
    "dns",
    "gateway",
    "cloud-init",
    "journal",
    "reboot",
    "stop",
]
DEFAULT_CHECKS: tuple[BuiltinKind, ...] = get_args(BuiltinKind)


class BuiltinCheck(BaseModel):
    """A built-in check; its name is its kind."""

    model_config = ConfigDict(extra="forbid")

    kind: BuiltinKind
    timeout_s: float = Field(default=0, ge=0, le=1800)  # 0: the kind's default

    @property
    def name(self) -> str:
        return self.kind


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


CheckSpec = Annotated[BuiltinCheck | CommandCheck, Field(discriminator="kind")]


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
    return [BuiltinCheck(kind=k) for k in DEFAULT_CHECKS]


class ImageSpec(BaseModel):
    """What to build and how to prove it: one image (os, release, variant) across arches."""

    model_config = ConfigDict(extra="forbid")

    os: Name
    release: Name
    variant: Name = "default"
    # These three go into every feed, public ones too: bounded like the names around them.
    release_title: str = Field(default="", max_length=200)
    aliases: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9./_-]{0,62}$")]] = Field(
        default=[], max_length=32
    )
    # LXD's image requirements (secureboot, cgroup, nesting, ...): short keys, short values.
    requirements: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")],
        Annotated[str, Field(max_length=256)],
    ] = Field(default={}, max_length=32)
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
    # What LXD instances the image is for: `virtual-machine` adds a bootable `disk-kvm.img`
    # (debootstrap builder; activities/builders/vm_disk.py). Containers always.
    instance_types: list[InstanceType] = Field(default=["container"], min_length=1, max_length=2)
    # Also run the whole suite in a privileged container (unprivileged always runs).
    privileged: bool = False
    # cloud-init user data every test instance gets (LXD's `cloud-init.user-data`), so the
    # checks can prove the image applies it; for images that ship cloud-init.
    cloud_init_user_data: str | None = Field(default=None, min_length=1, max_length=65536)

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
        types = self.instance_types
        if "container" not in types or len(set(types)) != len(types):
            raise ValueError("instance_types: container, and at most once each")
        if "virtual-machine" in self.instance_types and self.builder != "debootstrap":
            raise ValueError(f"virtual-machine images are built by debootstrap, not {self.builder}")
        if self.builder == "busybox" and self.cloud_init_user_data is not None:
            raise ValueError("`cloud_init_user_data` needs cloud-init, which busybox images lack")
        return self

    @property
    def name(self) -> str:
        """Catalog key of the image; feed products add the Debian arch name."""
        return f"{self.os}:{self.release}:{self.variant}"

    @property
    def privileges(self) -> list[Privilege]:
        both = [Privilege.unprivileged]
        return [*both, Privilege.privileged] if self.privileged else both

    @property
    def required_checks(self) -> list[str]:
        """The names the catalog requires per arch: `check`, and `check@privileged` if asked."""
        return [check_key(c.name, privilege) for privilege in self.privileges for c in self.checks]


def check_key(check: str, privilege: Privilege) -> str:
    """The assessment name of a check run with a privilege."""
    return check if privilege == Privilege.unprivileged else f"{check}@{privilege}"


# A field holding a spec: `image` names the image elsewhere. Payloads from before that
# rule (histories of running pipelines, older clients) still say `image`, and are read.
SpecField = Annotated[ImageSpec, Field(validation_alias=AliasChoices("spec", "image"))]
