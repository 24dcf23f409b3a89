"""The provenance key and the attestations it signs: DSSE envelopes (securesystemslib) of
the statements core.provenance makes, stored per version.

The key is an ed25519 PEM file on the server host (0600), made at first start like the TLS
certificate; its public half is a `signingkey` row. A row means a key was made, so a server
that later finds the file gone (or another key in it) refuses to sign: the publish or
promotion answers 503 and writes nothing, rather than going out unsigned or signed by a key
no host pins. `icefloe keys rotate` makes a new key, retires the old one (its row stays,
listed) and adds the new key's signature to every stored envelope. The private key is
never logged nor served: only its keyid and public half are.
"""

import copy
import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from activities.builders.debootstrap import DISTROS
from core.catalog import FILE_NAMES, AssessmentState, FileType, VersionCreate
from core.provenance import (
    PAYLOAD_TYPE,
    ArchSubjects,
    AttestationKind,
    BuildFacts,
    CheckResult,
    Promotion,
    icefloe_version,
    test_statement,
)
from core.sbom import SbomFormat
from server_api.locks import locked
from server_api.models import Assessment, Attestation, SigningKey, Version, VersionArch, utcnow

log = logging.getLogger(__name__)
PURPOSE = "provenance"


def _signer_of(pem: bytes) -> CryptoSigner:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an ed25519 private key")
    return CryptoSigner(key)


def public_key_of(row: SigningKey) -> SSlibKey:
    """The row's public key as securesystemslib verifies with it (keyid: the row's)."""
    pub = serialization.load_pem_public_key(row.public_key.encode())
    return SSlibKey.from_crypto(pub, keyid=row.keyid)


def _write_private(path: Path, signer: CryptoSigner) -> None:
    """The key file, 0600 from its first byte, replacing any other atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(signer.private_bytes)
    os.replace(draft, path)


def _new_row(signer: CryptoSigner) -> SigningKey:
    """The public half's row: PEM of the raw ed25519 key securesystemslib holds as hex."""
    raw = bytes.fromhex(signer.public_key.keyval["public"])
    pem = Ed25519PublicKey.from_public_bytes(raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SigningKey(purpose=PURPOSE, keyid=signer.public_key.keyid, public_key=pem.decode())


def _active(session: Session, rotating: bool = False) -> SigningKey | None:
    """The active key's row, held till the session ends: shared by signers (they wait for a
    rotation, not for each other), exclusive for a rotation (it waits for signers)."""
    query = select(SigningKey).where(
        SigningKey.purpose == PURPOSE, col(SigningKey.retired_at).is_(None)
    )
    if rotating:
        rows = locked(session, query)
    else:
        shared = query.with_for_update(read=True).execution_options(populate_existing=True)
        rows = session.exec(shared).all()
    return rows[0] if rows else None


class SigningUnavailable(Exception):
    """The server has no usable key although one was made: it signs nothing (503)."""

    def __init__(self, why: str, path: Path) -> None:
        self.message = (
            f"the provenance key {path} {why}; nothing is published or promoted unsigned: "
            "restore the file or run `icefloe keys rotate` on the server host"
        )
        super().__init__(self.message)


class ProvenanceKey:
    """The server's signer: the key file at `path`, checked against the active row before
    each signature (a rotation by `icefloe keys rotate` is picked up by a running server)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._signer: CryptoSigner | None = None

    def ensure(self, engine: Engine) -> None:
        """At start: make the key if none was ever made; else log (once, not the key) why
        the server will refuse to sign, if it will."""
        with Session(engine) as session:
            made = session.exec(select(SigningKey).where(SigningKey.purpose == PURPOSE)).first()
            if made is None and not self.path.exists():
                signer = CryptoSigner.generate_ed25519()
                _write_private(self.path, signer)
                session.add(_new_row(signer))
                session.commit()
                log.info("made provenance key %s in %s", signer.public_key.keyid, self.path)
                return
        try:
            if made is None:  # a file without its row (a new catalog): adopt its key
                self._adopt(engine)
            with Session(engine) as session:
                self.signer(session)
        except SigningUnavailable as exc:
            log.error("%s", exc.message)

    def _adopt(self, engine: Engine) -> None:
        try:
            signer = _signer_of(self.path.read_bytes())
        except (OSError, ValueError) as exc:
            raise SigningUnavailable(f"cannot be read ({type(exc).__name__})", self.path) from None
        with Session(engine) as session:
            session.add(_new_row(signer))
            session.commit()
        log.info(
            "provenance key %s of %s listed in the catalog", signer.public_key.keyid, self.path
        )

    def signer(self, session: Session) -> CryptoSigner:
        """The key of the active row, holding that row until the session ends (a rotation
        waits for this signature to commit); SigningUnavailable if the file is gone or
        holds another key."""
        row = _active(session)
        if row is None:
            raise SigningUnavailable("has no active key in the catalog", self.path)
        with self._lock:
            if self._signer is None or self._signer.public_key.keyid != row.keyid:
                self._signer = self._load(row)
            return self._signer

    def _load(self, row: SigningKey) -> CryptoSigner:
        try:
            signer = _signer_of(self.path.read_bytes())
        except FileNotFoundError:
            raise SigningUnavailable("is missing", self.path) from None
        except (OSError, ValueError) as exc:
            raise SigningUnavailable(f"cannot be read ({type(exc).__name__})", self.path) from None
        if signer.public_key.keyid != row.keyid:
            raise SigningUnavailable(f"is not key {row.keyid}, the active one", self.path)
        return signer

    def attest(
        self, session: Session, version: Version, kind: AttestationKind, statement: dict
    ) -> Attestation:
        """Sign `statement` and add it to the session (the caller's commit keeps both)."""
        payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
        envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
        envelope.sign(self.signer(session))
        row = Attestation(
            version_id=version.pk, kind=kind, statement=statement, envelope=envelope.to_dict()
        )
        session.add(row)
        return row


@dataclass(frozen=True)
class Rotated:
    old: str | None
    new: str
    envelopes: int


def rotate(session: Session, path: Path) -> Rotated:
    """A new key: the old one retired (still listed), the new one's signature added to every
    stored envelope, the file replaced, all in one transaction (a server signing meanwhile
    waits for it, then signs with the new key)."""
    old = _active(session, rotating=True)
    signer = CryptoSigner.generate_ed25519()
    now = utcnow()
    if old is not None:
        old.retired_at = now
        session.add(old)
    session.add(_new_row(signer))
    rows = session.exec(select(Attestation).order_by(col(Attestation.id))).all()
    for row in rows:
        envelope = Envelope.from_dict(copy.deepcopy(row.envelope))  # it empties what it reads
        envelope.sign(signer)
        row.envelope = envelope.to_dict()
        session.add(row)
    session.flush()
    previous = path.read_bytes() if path.exists() else None
    _write_private(path, signer)
    try:
        session.commit()
    except BaseException:
        if previous is not None:
            path.write_bytes(previous)
        raise
    return Rotated(old.keyid if old else None, signer.public_key.keyid, len(rows))


def subjects_of(session: Session, version: Version) -> list[ArchSubjects]:
    rows = session.exec(select(VersionArch).where(VersionArch.version_id == version.id)).all()
    out = []
    for r in rows:
        files = {
            FILE_NAMES[FileType.metadata]: r.metadata_sha256,
            FILE_NAMES[FileType.squashfs]: r.rootfs_sha256,
        }
        if r.manifest_sha256:
            files[FILE_NAMES[FileType.manifest]] = r.manifest_sha256
        for fmt in SbomFormat:
            if stored := r.sbom_file(fmt):
                files[fmt.ftype] = stored[0]
        out.append(ArchSubjects(arch=r.arch, files=files, fingerprint=r.fingerprint))
    return out


def build_facts(
    session: Session, version: Version, req: VersionCreate, definition_sha256: str
) -> BuildFacts:
    """What the publish request and the stored version say of the build."""
    spec = req.spec
    mirror = None
    if spec.builder == "debootstrap":
        mirror = spec.mirror or DISTROS.get(spec.os, (None,))[0]
    return BuildFacts(
        image=spec.name,
        serial=req.serial,
        builder=spec.builder,
        icefloe_version=icefloe_version(),
        definition=json.loads(spec.model_dump_json()),
        definition_sha256=definition_sha256,
        published_at=version.created_at,
        arches=subjects_of(session, version),
        manifests={
            a.arch: f.sha256 for a in req.arches for f in a.files if f.ftype == FileType.manifest
        },
        inputs={a: i.items for a, i in req.inputs.arches.items()} if req.inputs else {},
        mirror=mirror,
        workflow_id=req.workflow_id,
        builds={a.arch: a.built for a in req.arches if a.built is not None},
    )


def promotion_statement(
    session: Session,
    version: Version,
    at: datetime,
    actor: str,
    forced: bool,
    reason: str,
    known_failures: list[dict[str, Any]],
) -> dict[str, Any]:
    """The test statement of a promotion: the version's recorded results (a result from
    before its last revocation is there too: its `state` is what was recorded)."""
    rows = session.exec(select(Assessment).where(Assessment.version_id == version.id)).all()
    results = [
        CheckResult(
            check=r.check,
            arch=r.arch,
            host=r.host,
            instance_type=r.instance_type,
            server=r.server,
            state=AssessmentState(r.state).value,
            evidence=r.evidence,
        )
        for r in rows
    ]
    promotion = Promotion(
        at=at, actor=actor, forced=forced, reason=reason, known_failures=known_failures
    )
    return test_statement(
        version.image, version.serial, subjects_of(session, version), results, promotion
    )
