"""Catalog rules: publishing, the version state machine, the promotion gate, assessments.
Reading views lives in `views`, garbage collection in `gc`.

Routes stay thin; every rule that decides what an image's state may become lives here,
so the server (not the client) is the one that decides.
"""

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from core.catalog import (
    SATISFIED,
    ArchFiles,
    AssessmentReport,
    AssessmentState,
    BuiltFile,
    FileType,
    KnownFailureView,
    TransitionRequest,
    VersionCreate,
    VersionState,
)
from core.inputs import spec_digest
from core.manifest import MANIFEST_MAX_BYTES, ManifestError, Packages
from core.notices import NoticeKind
from core.provenance import AttestationKind, build_statement
from core.sbom import ImageBom, SbomFormat, sbom_json
from server_api.gate import gate, revoked_at
from server_api.locks import locked
from server_api.manifests import read_manifest
from server_api.models import Assessment, Blob, Event, Image, Version, VersionArch, utcnow
from server_api.notices import move_notice, record_notice
from server_api.provenance import ProvenanceKey, build_facts, promotion_statement
from server_api.store import FileStore
from server_api.unchanged import unchanged_since

ALLOWED: dict[VersionState, set[VersionState]] = {
    VersionState.created: {VersionState.testing},
    VersionState.testing: {VersionState.testing, VersionState.active, VersionState.inactive},
    VersionState.active: {VersionState.inactive, VersionState.revoked},
    VersionState.inactive: {VersionState.testing, VersionState.revoked},
    # Back only through a new test run (results recorded after the revocation) or an
    # operator's forced promotion.
    VersionState.revoked: {VersionState.testing, VersionState.active},
}


class CatalogError(Exception):
    """A request the catalog refuses; carries the HTTP status and a message that says why."""

    def __init__(self, status_code: int, message: str, **fields: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.fields = fields  # more for the client, beside `detail` in the answer


def get_version(session: Session, image: str, serial: str) -> Version:
    version = session.exec(
        select(Version).where(Version.image == image, Version.serial == serial)
    ).first()
    if version is None:
        raise CatalogError(404, f"no version {serial} of image {image}")
    return version


class Files(NamedTuple):
    """One arch's files in a publish request."""

    meta: BuiltFile
    root: BuiltFile
    manifest: BuiltFile | None


def _files(arch_files: ArchFiles) -> Files:
    by_type = {f.ftype: f for f in arch_files.files}
    if (
        len(by_type) != len(arch_files.files)
        or FileType.metadata not in by_type
        or FileType.squashfs not in by_type
    ):
        raise CatalogError(
            422,
            f"arch {arch_files.arch}: give exactly one lxd.tar.xz and one squashfs file "
            "(and at most one manifest)",
        )
    return Files(
        by_type[FileType.metadata], by_type[FileType.squashfs], by_type.get(FileType.manifest)
    )


def _check_stored(blobs: Sequence[Blob], store: FileStore, files: list[BuiltFile]) -> None:
    """Every file has its row (one of `blobs`) and its bytes, with the declared size."""
    by_sha = {b.sha256: b for b in blobs}
    for f in files:
        blob = by_sha.get(f.sha256)
        if blob is None or not store.exists(f.sha256):
            raise CatalogError(409, f"file {f.name} ({f.sha256}) is not uploaded yet")
        if blob.size != f.size:
            raise CatalogError(409, f"file {f.name} is {blob.size} bytes, not {f.size}")


def _check_manifest(store: FileStore, arch: str, manifest: BuiltFile | None) -> Packages | None:
    """A declared manifest must be one (core.manifest): a feed and the pages show it.
    Its packages, or None if the arch has no manifest."""
    if manifest is None:
        return None
    if manifest.size > MANIFEST_MAX_BYTES:
        raise CatalogError(
            422, f"arch {arch}: manifest {manifest.name} is over {MANIFEST_MAX_BYTES} bytes"
        )
    try:
        return read_manifest(store, manifest.sha256)
    except ManifestError as exc:
        raise CatalogError(422, f"arch {arch}: manifest {manifest.name}: {exc}") from None
    except FileNotFoundError:  # collected since it was checked
        raise CatalogError(409, f"arch {arch}: its files are not uploaded yet") from None


def _fingerprint(store: FileStore, arch: str, meta: BuiltFile, root: BuiltFile) -> str:
    try:
        return store.combined_sha256(meta.sha256, root.sha256)
    except FileNotFoundError:  # collected since they were checked
        raise CatalogError(409, f"arch {arch}: its files are not uploaded yet") from None


def publish(
    session: Session, store: FileStore, key: ProvenanceKey, req: VersionCreate, actor: str
) -> tuple[Version, bool]:
    """Create a version from uploaded files; its deltas are made afterwards (`deltas`).
    The same request again is a no-op (False), also when it races the first one: the
    insert of the one that commits second breaks a unique constraint, and its retry reads
    the version the first one made. The version's build provenance is signed in the same
    transaction: without the key nothing is published."""
    for _ in range(3):  # each conflict means another publish committed: one retry sees it
        try:
            return _publish(session, store, key, req, actor)
        except IntegrityError:
            session.rollback()
    raise CatalogError(
        409, f"version {req.serial} of {req.spec.name} is being published concurrently; try again"
    )


def _publish(
    session: Session, store: FileStore, key: ProvenanceKey, req: VersionCreate, actor: str
) -> tuple[Version, bool]:
    spec = req.spec
    pairs = {a.arch: _files(a) for a in req.arches}
    if len(pairs) != len(req.arches):
        raise CatalogError(422, "each arch may appear once")
    files = [f for a in req.arches for f in a.files]
    blobs = select(Blob).where(col(Blob.sha256).in_({f.sha256 for f in files}))
    _check_stored(session.exec(blobs).all(), store, files)

    existing = session.exec(
        select(Version).where(Version.image == spec.name, Version.serial == req.serial)
    ).first()
    if existing is not None:
        stored = {
            a.arch: (a.metadata_sha256, a.rootfs_sha256, a.manifest_sha256)
            for a in session.exec(select(VersionArch).where(VersionArch.version_id == existing.id))
        }
        wanted = {
            arch: (m.sha256, r.sha256, p.sha256 if p else None) for arch, (m, r, p) in pairs.items()
        }
        if stored != wanted:
            raise CatalogError(
                409,
                f"version {req.serial} of {spec.name} exists with other files; "
                "publish a new serial instead",
            )
        return existing, False

    # Hashing gigabytes comes before any lock is taken, and so does making the SBOMs.
    packages = {arch: _check_manifest(store, arch, f.manifest) for arch, f in pairs.items()}
    fingerprints = {arch: _fingerprint(store, arch, f.meta, f.root) for arch, f in pairs.items()}
    created_at = utcnow()
    sboms = {
        arch: _sboms(ImageBom(spec.name, req.serial, arch, created_at, found, fingerprints[arch]))
        for arch, found in packages.items()
        if found is not None
    }
    # The files' rows are held until the commit: a gc that comes later sees this version
    # list them and keeps them; one that came first took them, and this publish is refused.
    _check_stored(locked(session, blobs.order_by(col(Blob.sha256))), store, files)
    digest = spec_digest(spec)
    if not req.force and (since := unchanged_since(session, store, spec.name, digest, packages)):
        raise CatalogError(
            409,
            f"{spec.name} {req.serial} is not published: its definition and packages equal "
            f"those of {since}, the newest active version (force publishes it anyway)",
            unchanged_since=since,
        )
    described = spec.model_dump(include={"os", "release", "variant", "release_title", "aliases"})
    described["requirements"] = spec.requirements
    image = session.get(Image, spec.name)
    if image is None:
        image = Image(name=spec.name, **described)
    else:
        image.sqlmodel_update(described)
    session.add(image)
    version = Version(
        image=spec.name,
        serial=req.serial,
        created_at=created_at,
        required_checks=spec.required_checks,
        spec_digest=digest,
        inputs=req.inputs.model_dump(mode="json") if req.inputs else None,
    )
    session.add(version)
    session.flush()
    for arch, (meta, root, manifest) in pairs.items():
        fingerprint = fingerprints[arch]
        clash = session.exec(
            select(VersionArch).where(VersionArch.fingerprint == fingerprint)
        ).first()
        if clash is not None:
            raise CatalogError(
                409, f"arch {arch}: these files are already published as another version"
            )
        varch = VersionArch(
            version_id=version.pk,
            arch=arch,
            fingerprint=fingerprint,
            metadata_sha256=meta.sha256,
            metadata_size=meta.size,
            rootfs_sha256=root.sha256,
            rootfs_size=root.size,
            manifest_sha256=manifest.sha256 if manifest else None,
            manifest_size=manifest.size if manifest else None,
        )
        for fmt, body in sboms.get(arch, {}).items():
            varch.set_sbom_file(fmt, hashlib.sha256(body).hexdigest(), len(body))
        session.add(varch)
    session.add(
        Event(
            version_id=version.pk,
            actor=actor,
            from_state=None,
            to_state=VersionState.created,
            reason="published",
            workflow_id=req.workflow_id,
        )
    )
    made = {hashlib.sha256(body).hexdigest(): body for b in sboms.values() for body in b.values()}
    new = _hold_made(session, made)
    session.flush()
    # The statement's subjects are the VersionArch rows' files, the SBOMs among them.
    statement = build_statement(build_facts(session, version, req, digest))
    key.attest(session, version, AttestationKind.build, statement)
    # Their bytes last, while their rows are held (no gc takes them, no other publish
    # writes them): a refused publish wrote none, a failed commit leaves none.
    try:
        for body in made.values():
            store.write(body)
        session.commit()
    except BaseException:
        for sha256 in new:
            store.delete(sha256)
        raise
    return version, True


def _sboms(bom: ImageBom) -> dict[SbomFormat, bytes]:
    """Both documents of one arch, stored with its files: the route serves these bytes, the
    feeds list them, the build statement names their digests."""
    return {fmt: sbom_json(bom, fmt) for fmt in SbomFormat}


def _hold_made(session: Session, made: dict[str, bytes]) -> list[str]:
    """The Blob rows of files the server made (sha256 -> bytes), held until the commit: a
    row already there is locked (gc waits), one missing is added. The sha256s added."""
    if not made:
        return []
    query = select(Blob).where(col(Blob.sha256).in_(made)).order_by(col(Blob.sha256))
    have = {b.sha256 for b in locked(session, query)}
    new = sorted(made.keys() - have)
    session.add_all(Blob(sha256=sha256, size=len(made[sha256])) for sha256 in new)
    return new


def transition(
    session: Session,
    key: ProvenanceKey,
    version: Version,
    req: TransitionRequest,
    actor: str,
    keep_active: int,
    operator: bool = False,
) -> Version:
    """Move a version; promotion passes the gate unless an operator forces it, and signs
    the test statement of the results it stood on (none is promoted without it).

    The move is a compare-and-set from the state read here (or the caller's `from_state`):
    of two requests that decided on the same state, one moves the version and the other
    gets 409 with the state it found, never two answers that contradict each other."""
    if req.force and not operator:
        raise CatalogError(403, "a forced promotion needs an operator token")
    if req.to == VersionState.revoked:
        raise CatalogError(
            422, "revoke through POST .../revoke (operator): it also restores the version before"
        )
    expected = req.from_state or version.state
    if expected == VersionState.revoked and req.to == VersionState.active and not req.force:
        raise CatalogError(
            409,
            f"{version.image} {version.serial} is revoked: only a new test run (to: testing) "
            "or an operator's forced promotion makes it active again",
        )
    if _refused(version, req.to, expected):
        raise _refusal(version, req.to, expected)
    reason, relied = req.reason, list[KnownFailureView]()
    if req.to == VersionState.active and not req.force:
        reason, relied = _gate(session, version, reason)
    if req.to == VersionState.active:
        # Promotions of one image queue here, so each one's retention sees the others'.
        image = locked(session, select(Image).where(Image.name == version.image))[0]
        if image.held_at is not None:
            session.rollback()
            raise held(image)
    if not _move(session, version, expected, req.to, actor, reason, req.workflow_id, req.force):
        session.rollback()
        session.refresh(version)
        raise _refusal(version, req.to, expected)
    if req.to == VersionState.active:
        _retire_older(session, version, actor, keep_active)
        known = [k.model_dump(mode="json", include=KNOWN_FIELDS) for k in relied]
        at = version.state_changed_at
        statement = promotion_statement(session, version, at, actor, req.force, reason, known)
        key.attest(session, version, AttestationKind.test, statement)
    session.commit()
    return version


def held(image: Image) -> CatalogError:
    """The 409 a promotion of a held image gets: who holds it, since when, why."""
    return CatalogError(
        409,
        f"{image.name} is held by {image.held_by} since {image.held_at:%Y-%m-%d %H:%M} UTC "
        f"({image.hold_reason}): no promotion until `icefloe release {image.name}`",
        held_by=image.held_by or "",
    )


# What a test statement says of each known failure a promotion relied on.
KNOWN_FIELDS = {"check", "arch", "reason", "link", "until"}


def _gate(session: Session, version: Version, reason: str) -> tuple[str, list[KnownFailureView]]:
    """Refuse a promotion the gate does not let through; else the event's reason, naming
    the known failures it relied on, and those."""
    seen = gate(session, version)
    unmet = {a: c for a, c in seen.unmet.items() if c}
    if unmet or not version.required_checks:
        detail = "; ".join(f"{a}: {', '.join(c)}" for a, c in sorted(unmet.items()))
        raise CatalogError(409, f"not every required check passed, still needed: {detail or 'all'}")
    if seen.relied_on:
        relied = "; ".join(k.says() for k in seen.relied_on)
        reason += f"; relied on known failures, the gate did not require: {relied}"
    return reason, list(seen.relied_on)


def _refused(version: Version, to: VersionState, expected: VersionState) -> bool:
    return (
        version.files_deleted_at is not None
        or version.state != expected
        or to not in ALLOWED[version.state]
    )


def _refusal(version: Version, to: VersionState, expected: VersionState) -> CatalogError:
    """Why `version` (as now read) cannot go to `to`: the 409 names the state it found."""
    name = f"{version.image} {version.serial}"
    if version.files_deleted_at is not None:
        return CatalogError(409, f"{name}: its files were garbage-collected; publish anew")
    if version.state != expected:
        return CatalogError(
            409, f"{name} is {version.state} now, not {expected}; it did not go to {to}"
        )
    return CatalogError(
        409,
        f"{name} is {version.state}; it cannot go to {to} "
        f"(allowed: {', '.join(sorted(ALLOWED[version.state])) or 'none'})",
    )


def _move(
    session: Session,
    version: Version,
    expected: VersionState,
    to: VersionState,
    actor: str,
    reason: str,
    workflow_id: str | None,
    forced: bool = False,
) -> bool:
    """Set the state if it is still `expected` and the files are not collected, with its
    event; False (nothing written) if another transaction changed it first."""
    now = utcnow()
    moved = session.execute(
        update(Version)
        .where(
            col(Version.id) == version.pk,
            col(Version.state) == expected,
            col(Version.files_deleted_at).is_(None),
        )
        .values(state=to, state_changed_at=now)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult, moved).rowcount != 1:
        return False
    set_committed_value(version, "state", to)
    set_committed_value(version, "state_changed_at", now)
    session.add(
        Event(
            version_id=version.pk,
            actor=actor,
            from_state=expected,
            to_state=to,
            reason=reason,
            workflow_id=workflow_id,
            forced=forced,
            at=now,
        )
    )
    if kind := move_notice(to, expected, reason, forced):
        said = {"actor": actor, "reason": reason, "forced": forced, "from_state": expected}
        record_notice(session, kind, version.image, version.serial, said | {"to_state": to})
    return True


def _retire_older(session: Session, version: Version, actor: str, keep_active: int) -> None:
    """Keep the newest `keep_active` active versions of the image; older ones go inactive
    (one that another request moved meanwhile is no longer active: it is left alone)."""
    active = session.exec(
        select(Version)
        .where(Version.image == version.image, Version.state == VersionState.active)
        .order_by(col(Version.serial).desc())
        .execution_options(populate_existing=True)
    ).all()
    for old in active[keep_active:]:
        _move(
            session,
            old,
            VersionState.active,
            VersionState.inactive,
            actor,
            f"retention: {version.serial} activated, keeping {keep_active} active",
            None,
        )


def record_assessment(session: Session, version: Version, report: AssessmentReport) -> Assessment:
    """Upsert one result; a passed or not-applicable result is final, never overwritten,
    unless the version was revoked since (a new test run records its own)."""
    row = session.exec(
        select(Assessment).where(
            Assessment.version_id == version.id,
            Assessment.arch == report.arch,
            Assessment.check == report.check,
            Assessment.instance_type == report.instance_type,
            Assessment.host == report.host,
        )
    ).first()
    since = revoked_at(session, version)
    if row is not None and row.state in SATISFIED and not _before(row, since):
        if report.state == row.state:
            return row
        already = row.state.value.replace("_", " ")
        raise CatalogError(409, f"check {report.check} on {report.arch} already {already}")
    known = session.exec(
        select(VersionArch).where(
            VersionArch.version_id == version.id, VersionArch.arch == report.arch
        )
    ).first()
    if known is None:
        raise CatalogError(422, f"version {version.serial} has no arch {report.arch}")
    newly_failed = report.state == AssessmentState.failed and (
        row is None or row.state != AssessmentState.failed
    )
    row = row or Assessment(
        version_id=version.pk,
        **report.model_dump(include={"arch", "check", "instance_type", "host"}),
    )
    if newly_failed:
        _check_failed(session, version, report)
    row.sqlmodel_update(report.model_dump(include={"state", "evidence", "duration_s", "server"}))
    row.failures += report.state == AssessmentState.failed
    row.updated_at = utcnow()
    session.add(row)
    session.commit()
    return row


def _check_failed(session: Session, version: Version, report: AssessmentReport) -> None:
    """The event of a result that became failed (the same failure reported again is not)."""
    said = report.model_dump(include={"arch", "check", "instance_type", "host", "duration_s"})
    said["evidence"] = report.evidence[-2000:]
    said["reason"] = f"{report.check} failed on {report.arch}"
    record_notice(session, NoticeKind.check_failed, version.image, version.serial, said)


def _before(row: Assessment, since: datetime | None) -> bool:
    at = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
    return since is not None and at <= (since if since.tzinfo else since.replace(tzinfo=UTC))


def abandon_running(session: Session, version: Version, older_than_s: int) -> int:
    """Fail the running results nobody updated for `older_than_s` (their tester died),
    so a re-run tests them again. Returns how many."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    rows = session.exec(
        select(Assessment).where(
            Assessment.version_id == version.id,
            Assessment.state == AssessmentState.running,
            Assessment.updated_at <= cutoff,
        )
    ).all()
    for row in rows:
        row.state = AssessmentState.failed
        row.evidence = f"abandoned: no result within {older_than_s} s"
        row.updated_at = utcnow()
        session.add(row)
    session.commit()
    return len(rows)
