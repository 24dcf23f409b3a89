"""A version's signed statements (build provenance, test results) and the keys that sign
them: what `icefloe verify` on an LXD or Incus host checks an image against."""

from typing import Annotated, Any

from fastapi import APIRouter, Path

from core.provenance import KeysView, VersionAttestations
from server_api.attestations import attestations_view, by_fingerprint, keys_view
from server_api.catalog import get_version
from server_api.deps import ApiReader, SessionDep
from server_api.routes.versions import ImageName, SerialPath
from server_api.routing import ReleasingRoute

router = APIRouter(prefix="/api/v1", tags=["attestations"], route_class=ReleasingRoute)
Fingerprint = Annotated[
    str,
    Path(
        pattern=r"^[0-9a-fA-F]{12,64}$",
        description="an LXD or Incus fingerprint of any arch of the version, or a unique "
        "prefix of at least 12 hex digits",
    ),
]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such image, version or fingerprint"}
}


@router.get("/keys", summary="The public keys that sign (or signed) attestations")
def read_keys(session: SessionDep) -> KeysView:
    """Always public: a host pins the active key; a retired one (rotated away) still
    verifies what it signed, and every envelope also carries the active key's signature."""
    return keys_view(session)


@router.get(
    "/images/{image}/versions/{serial}/attestations",
    summary="A version's DSSE envelopes: its build provenance and each promotion's test results",
    dependencies=[ApiReader],
    responses=NOT_FOUND,
)
def read_attestations(
    image: ImageName, serial: SerialPath, session: SessionDep
) -> VersionAttestations:
    return attestations_view(session, get_version(session, image, serial))


@router.get(
    "/attestations/{fingerprint}",
    summary="The attestations of the version an image fingerprint belongs to",
    dependencies=[ApiReader],
    responses=NOT_FOUND,
)
def read_attestations_of(fingerprint: Fingerprint, session: SessionDep) -> VersionAttestations:
    return attestations_view(session, by_fingerprint(session, fingerprint))
