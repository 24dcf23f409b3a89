"""The catalog's side of a file upload: content is known when its row and its bytes are
both there, and each upload of it restarts gc's grace for content no version lists."""

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from server_api.catalog import CatalogError
from server_api.models import Blob, utcnow
from server_api.store import FileStore


def stored(session: Session, store: FileStore, sha256: str) -> Blob | None:
    """The content's row, if its bytes are on disk too (else it must be uploaded again)."""
    blob = session.get(Blob, sha256)
    return blob if blob is not None and store.exists(sha256) else None


def _touch(session: Session, sha256: str) -> bool:
    """Restart gc's grace for unlisted content, if its row is still there: a compare-and-set,
    since gc may delete the row at any moment (an ORM update of a deleted row is a 500)."""
    touched = session.execute(
        update(Blob).where(col(Blob.sha256) == sha256).values(created_at=utcnow())
    )
    session.commit()
    return bool(getattr(touched, "rowcount", 0))


def known(session: Session, store: FileStore, sha256: str, size: int) -> bool:
    """Whether the content is stored already; if so, gc's grace for unlisted files restarts.
    Content gc took meanwhile is not known: it is uploaded anew. 409 for another size."""
    blob = stored(session, store, sha256)
    if blob is None:
        return False
    if blob.size != size:
        raise CatalogError(409, f"this content is stored with size {blob.size}, not {size}")
    return _touch(session, sha256) and store.exists(sha256)


def record(session: Session, sha256: str, size: int) -> None:
    """Record content whose bytes the store holds now."""
    session.add(Blob(sha256=sha256, size=size))
    try:
        session.commit()
    except IntegrityError:  # a concurrent upload of the same content recorded it first
        session.rollback()
        _touch(session, sha256)
