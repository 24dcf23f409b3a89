"""Catalog tables. An image (os:release:variant) has versions (serials); a version has
one file pair per arch; feeds show one simplestreams product per (image, arch)."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, String, UniqueConstraint, false
from sqlmodel import Field, SQLModel, col

from core.catalog import AssessmentState, Channel, DeltaState, Flavour, VersionState
from core.notices import DeliveryState, HookFormat
from core.sbom import SbomFormat
from server_api.schemas import TokenScope


def utcnow() -> datetime:
    return datetime.now(UTC)


class Image(SQLModel, table=True):
    name: str = Field(primary_key=True)
    os: str
    release: str
    variant: str
    release_title: str = ""
    aliases: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    requirements: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON))
    # A hold (server_api.revoke): while set, no version of the image is promoted.
    held_by: str | None = None
    hold_reason: str | None = None
    held_at: datetime | None = None


class Version(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("image", "serial"),)

    id: int | None = Field(default=None, primary_key=True)
    image: str = Field(foreign_key="image.name", index=True)
    serial: str
    state: VersionState = Field(default=VersionState.created, index=True)
    required_checks: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)
    state_changed_at: datetime = Field(default_factory=utcnow)
    # Set by garbage collection: the version's own files are gone, it can never come back.
    files_deleted_at: datetime | None = None
    # The definition's digest (core.inputs.spec_digest), computed by the server at publish:
    # the second guard compares it. None for a version published before it was kept.
    spec_digest: str | None = None
    # What the publisher said it was built from (core.inputs.VersionInputs), if it said.
    inputs: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))

    @property
    def pk(self) -> int:
        """The id of a stored row (read, or flushed after it was added)."""
        if self.id is None:
            raise RuntimeError(f"version {self.serial} of {self.image} is not stored yet")
        return self.id


class VersionArch(SQLModel, table=True):
    """The files of one arch of a version and the fingerprint the server computed."""

    __table_args__ = (UniqueConstraint("version_id", "arch"),)

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="version.id", index=True)
    arch: str
    # Unique: LXD cannot look an image up when one feed lists a fingerprint twice.
    fingerprint: str = Field(index=True, unique=True)
    metadata_sha256: str
    metadata_size: int
    rootfs_sha256: str
    rootfs_size: int
    # An xdelta3 (vcdiff) delta from the rootfs of version `delta_base` (a serial of the
    # same image, same arch) to this one: LXD with the base cached downloads only it.
    delta_base: str | None = None
    delta_sha256: str | None = None
    delta_size: int | None = None
    # Made after the publish by a server's delta maker (server_api.deltas): pending until
    # one server claims it (`delta_claim`, renewed at `delta_claimed_at` while xdelta3
    # runs), then made or none (`delta_detail` says why), once.
    delta_state: DeltaState = Field(
        default=DeltaState.pending,
        sa_type=String,
        index=True,
        sa_column_kwargs={"server_default": DeltaState.pending.value},
    )
    delta_detail: str = Field(default="", sa_column_kwargs={"server_default": ""})
    delta_claim: str | None = None
    delta_claimed_at: datetime | None = None
    # The packages in the rootfs (core.manifest); None for a version published without one.
    manifest_sha256: str | None = None
    manifest_size: int | None = None
    # Its bills of materials (server_api.sbom), made and stored at publish from the manifest;
    # None without a manifest, or for a version published before they were stored.
    sbom_spdx_sha256: str | None = None
    sbom_spdx_size: int | None = None
    sbom_cdx_sha256: str | None = None
    sbom_cdx_size: int | None = None

    def sbom_file(self, fmt: SbomFormat) -> tuple[str, int] | None:
        """(sha256, size) of its stored document in `fmt`, if one was stored."""
        if fmt is SbomFormat.spdx:
            sha256, size = self.sbom_spdx_sha256, self.sbom_spdx_size
        else:
            sha256, size = self.sbom_cdx_sha256, self.sbom_cdx_size
        return (sha256, size) if sha256 is not None and size is not None else None

    def set_sbom_file(self, fmt: SbomFormat, sha256: str, size: int) -> None:
        if fmt is SbomFormat.spdx:
            self.sbom_spdx_sha256, self.sbom_spdx_size = sha256, size
        else:
            self.sbom_cdx_sha256, self.sbom_cdx_size = sha256, size


def listed_files() -> tuple[Any, ...]:
    """The sha256 column of every file a version arch lists (gc keeps them, a revocation
    withdraws them, the channel grace covers them)."""
    return (
        col(VersionArch.metadata_sha256),
        col(VersionArch.rootfs_sha256),
        col(VersionArch.delta_sha256),
        col(VersionArch.manifest_sha256),
        col(VersionArch.sbom_spdx_sha256),
        col(VersionArch.sbom_cdx_sha256),
    )


class ImageCheck(SQLModel, table=True):
    """The newest check of an image that found its inputs unchanged, so nothing was built:
    one row per image, each check overwrites it."""

    image: str = Field(primary_key=True, foreign_key="image.name")
    unchanged_since: str  # the serial of the active version whose inputs it found again
    workflow_id: str | None = None
    checked_at: datetime = Field(default_factory=utcnow)


class Blob(SQLModel, table=True):
    """A stored file, by content; uploaded once, shared by any versions that list it."""

    sha256: str = Field(primary_key=True)
    size: int
    # Last upload of the content; gc keeps a file no version lists for a grace after it.
    created_at: datetime = Field(default_factory=utcnow)


class Event(SQLModel, table=True):
    """Every state transition, kept forever: who, from, to, why, from which workflow. Also
    each later change to what feeds list of a version (a delta made): from and to its
    state then, so the feeds' and trees' generation moves (server_api.feeds)."""

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="version.id", index=True)
    actor: str
    from_state: VersionState | None
    to_state: VersionState
    reason: str
    workflow_id: str | None = None
    forced: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    at: datetime = Field(default_factory=utcnow)


class Assessment(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("version_id", "arch", "check", "instance_type", "host"),)

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="version.id", index=True)
    arch: str
    check: str
    instance_type: str
    host: str
    server: str | None = None  # lxd 5.0.2, incus 6.0.4: the daemon of the newest result
    state: AssessmentState
    evidence: str = ""
    duration_s: float = 0.0
    updated_at: datetime = Field(default_factory=utcnow)
    # Failed results recorded for it, also those a retry later turned into a pass: the
    # row keeps only the newest result, this keeps how often the check failed.
    failures: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class KnownFailure(SQLModel, table=True):
    """An operator's known failure of a check (core.catalog.KnownFailureCreate): the gate
    does not require the check until `until`. One per image, check and arch ('' = every)."""

    __table_args__ = (UniqueConstraint("image", "check", "arch"),)

    id: int | None = Field(default=None, primary_key=True)
    image: str = Field(foreign_key="image.name", index=True)
    check: str
    arch: str = ""
    reason: str
    link: str | None = None
    until: datetime
    actor: str
    created_at: datetime = Field(default_factory=utcnow)


class Secret(SQLModel):
    """What tokens and feed credentials share: a name, a life time, revocation."""

    id: int | None = Field(default=None, primary_key=True)
    name: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class Token(Secret, table=True):
    """An API token; only its sha256 is stored, the token itself is shown once."""

    scope: TokenScope = Field(sa_type=String)
    token_sha256: str = Field(unique=True)


class FeedCredential(Secret, table=True):
    """A consumer's private feed: its secret is in the feed URL, so only its sha256 is kept."""

    channel: Channel = Field(sa_type=String)
    flavour: Flavour = Field(sa_type=String)
    secret_sha256: str = Field(unique=True)


class Hook(SQLModel, table=True):
    """A webhook subscription. Its secret is kept as it is, not hashed: every delivery's
    HMAC is computed with it. It is served once, in the answer that creates the hook."""

    id: int | None = Field(default=None, primary_key=True)
    url: str
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    format: HookFormat = Field(sa_type=String)
    secret: str
    created_by: str
    created_at: datetime = Field(default_factory=utcnow)
    # Removed hooks stay, so their deliveries can still be read; nothing new goes to them.
    removed_at: datetime | None = None


class Notice(SQLModel, table=True):
    """The outbox: one event, written in the transaction of the change it tells of."""

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True)  # the CloudEvents id receivers de-duplicate by
    kind: str = Field(index=True)
    image: str
    serial: str | None = None
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # A workflow's idempotency key: the same report again records nothing new.
    key: str | None = Field(default=None, unique=True)
    at: datetime = Field(default_factory=utcnow)


class Delivery(SQLModel, table=True):
    """A notice to one hook. `dispatched_at` is set once its workflow is started; a row
    without one (its server died first) is started by any server's dispatcher."""

    id: int | None = Field(default=None, primary_key=True)
    hook_id: int = Field(foreign_key="hook.id", index=True)
    notice_id: int = Field(foreign_key="notice.id", index=True)
    state: DeliveryState = Field(default=DeliveryState.pending, sa_type=String, index=True)
    attempts: int = 0
    last_status: int | None = None
    last_error: str = ""
    dispatched_at: datetime | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class SigningKey(SQLModel, table=True):
    """A key the server signs with: `provenance` (DSSE envelopes) or `streams` (OpenPGP
    clear-signed feeds). Its row says a key was made, so a server that later finds the key
    file gone refuses to sign instead of making another; a rotated key keeps its row, retired,
    so what it signed still verifies."""

    id: int | None = Field(default=None, primary_key=True)
    purpose: str = Field(index=True)
    keyid: str = Field(unique=True)
    public_key: str  # PEM (provenance) or ASCII-armored OpenPGP (streams)
    created_at: datetime = Field(default_factory=utcnow)
    retired_at: datetime | None = None


class Attestation(SQLModel, table=True):
    """A signed in-toto statement about a version (core.provenance): `build` at publish,
    `test` at each promotion. The envelope gains a signature when the key is rotated."""

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="version.id", index=True)
    kind: str
    statement: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    envelope: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
