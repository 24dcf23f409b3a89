"""Reading attestations and keys: what the routes under /api/v1 answer (server_api.provenance
makes and signs them)."""

from sqlmodel import Session, col, select

from core.catalog import VersionState
from core.provenance import (
    AttestationKind,
    AttestationView,
    KeysView,
    KeyView,
    Revocation,
    VersionAttestations,
)
from server_api.catalog import CatalogError
from server_api.models import Attestation, Event, SigningKey, Version, VersionArch
from server_api.provenance import PURPOSE, public_key_of


def keys_view(session: Session) -> KeysView:
    """Every key the server signs or signed with, of every purpose: `key` only for the
    provenance keys (securesystemslib's form); another purpose's (the streams' OpenPGP key)
    is its `public_key_pem` alone."""
    rows = session.exec(select(SigningKey).order_by(col(SigningKey.id))).all()
    return KeysView(
        keys=[
            KeyView(
                keyid=r.keyid,
                purpose=r.purpose,
                key=public_key_of(r).to_dict() if r.purpose == PURPOSE else None,
                public_key_pem=r.public_key,
                created_at=r.created_at,
                retired_at=r.retired_at,
            )
            for r in rows
        ]
    )


def by_fingerprint(session: Session, fingerprint: str) -> Version:
    """The version one of whose arches has this fingerprint, or a unique prefix of it."""
    fingerprint = fingerprint.lower()
    rows = session.exec(
        select(VersionArch.version_id)
        .where(col(VersionArch.fingerprint).startswith(fingerprint))
        .distinct()
        .limit(2)
    ).all()
    if len(rows) != 1:
        many = "more than one version" if rows else "no version"
        raise CatalogError(404, f"{many} has an image whose fingerprint starts with {fingerprint}")
    version = session.get(Version, rows[0])
    assert version is not None
    return version


def attestations_view(session: Session, version: Version) -> VersionAttestations:
    rows = session.exec(
        select(Attestation)
        .where(Attestation.version_id == version.id)
        .order_by(col(Attestation.id))
    ).all()
    revoked = None
    if version.state == VersionState.revoked:
        event = session.exec(
            select(Event)
            .where(Event.version_id == version.id, Event.to_state == VersionState.revoked)
            .order_by(col(Event.at).desc())
        ).first()
        if event is not None:
            revoked = Revocation(at=event.at, actor=event.actor, reason=event.reason)
    return VersionAttestations(
        image=version.image,
        serial=version.serial,
        state=version.state,
        revoked=revoked,
        attestations=[
            AttestationView(
                kind=AttestationKind(r.kind), created_at=r.created_at, envelope=r.envelope
            )
            for r in rows
        ],
    )
