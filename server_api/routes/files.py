"""File uploads by content: PUT streams to disk and is verified before it becomes visible."""

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col
from starlette.requests import ClientDisconnect

from server_api.deps import Publisher, SessionDep, SettingsDep, StoreDep, briefly
from server_api.models import Blob, utcnow
from server_api.routing import ReleasingRoute
from server_api.store import FileStore, UploadRejected

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/files", tags=["files"], route_class=ReleasingRoute)
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="sha256 of the content")]


def _stored(session: Session, store: FileStore, sha256: str) -> Blob | None:
    """The content's row, if its bytes are on disk too (else it must be uploaded again)."""
    blob = session.get(Blob, sha256)
    return blob if blob is not None and store.exists(sha256) else None


@router.head("/{sha256}", summary="Is this content already stored?")
def file_exists(sha256: Sha256, session: SessionDep, store: StoreDep, _: Publisher) -> Response:
    blob = _stored(session, store, sha256)
    if blob is None:
        return Response(status_code=404)
    return Response(headers={"X-Icefloe-Size": str(blob.size)})


def _touch(session: Session, sha256: str) -> bool:
    """Restart gc's grace for unlisted content, if its row is still there: a compare-and-set,
    since gc may delete the row at any moment (an ORM update of a deleted row is a 500)."""
    touched = session.execute(
        update(Blob).where(col(Blob.sha256) == sha256).values(created_at=utcnow())
    )
    session.commit()
    return bool(getattr(touched, "rowcount", 0))


def _known(session: Session, store: FileStore, sha256: str, size: int) -> bool:
    """Whether the content is stored already; if so, gc's grace for unlisted files restarts.
    Content gc took meanwhile is not known: it is uploaded anew."""
    blob = _stored(session, store, sha256)
    if blob is None:
        return False
    if blob.size != size:
        raise HTTPException(409, f"this content is stored with size {blob.size}, not {size}")
    return _touch(session, sha256) and store.exists(sha256)


def _record(session: Session, sha256: str, size: int) -> None:
    session.add(Blob(sha256=sha256, size=size))
    try:
        session.commit()
    except IntegrityError:  # a concurrent upload of the same content recorded it first
        session.rollback()
        _touch(session, sha256)


@router.put("/{sha256}", status_code=201, summary="Upload a file (streamed, verified)")
async def upload_file(
    sha256: Sha256,
    size: Annotated[int, Query(ge=0, description="exact size in bytes")],
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    _: Publisher,
) -> dict:
    # No database session is held while the body streams (that may take minutes): one
    # short session looks the content up before, another records it after.
    if size > settings.max_upload_bytes:
        raise HTTPException(413, f"{size} bytes is over the limit of {settings.max_upload_bytes}")
    if await run_in_threadpool(briefly, request, lambda s: _known(s, store, sha256, size)):
        return {"sha256": sha256, "size": size, "stored": False}
    try:
        await store.put(sha256, size, request.stream())
    except ClientDisconnect:  # the client's doing, not the server's: one line, no traceback
        log.warning("upload of %s (%d bytes) ended: the client disconnected", sha256, size)
        raise HTTPException(400, "the client disconnected mid-upload; nothing stored") from None
    except UploadRejected as exc:
        raise HTTPException(422, f"upload rejected, nothing stored: {exc}") from None
    except OSError as exc:  # the disk is full or unwritable: the server's problem, said plainly
        raise HTTPException(507, f"cannot store the file, nothing stored: {exc.strerror}") from None
    await run_in_threadpool(briefly, request, lambda s: _record(s, sha256, size))
    return {"sha256": sha256, "size": size, "stored": True}
