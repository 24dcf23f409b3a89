"""File uploads by content: PUT streams to disk and is verified before it becomes visible."""

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from server_api import uploads
from server_api.deps import Publisher, ServicesDep, SessionDep, briefly
from server_api.routing import ReleasingRoute
from server_api.store import UploadRejected

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/files", tags=["files"], route_class=ReleasingRoute)
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="sha256 of the content")]


@router.head("/{sha256}", summary="Is this content already stored?")
def file_exists(
    sha256: Sha256, session: SessionDep, services: ServicesDep, _: Publisher
) -> Response:
    blob = uploads.stored(session, services.store, sha256)
    if blob is None:
        return Response(status_code=404)
    return Response(headers={"X-Icefloe-Size": str(blob.size)})


@router.put("/{sha256}", status_code=201, summary="Upload a file (streamed, verified)")
async def upload_file(
    sha256: Sha256,
    size: Annotated[int, Query(ge=0, description="exact size in bytes")],
    request: Request,
    services: ServicesDep,
    _: Publisher,
) -> dict:
    # No database session is held while the body streams (that may take minutes): one
    # short session looks the content up before, another records it after.
    store, limit = services.store, services.settings.max_upload_bytes
    if size > limit:
        raise HTTPException(413, f"{size} bytes is over the limit of {limit}")
    known = await run_in_threadpool(
        briefly, services.engine, lambda s: uploads.known(s, store, sha256, size)
    )
    if known:
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
    await run_in_threadpool(briefly, services.engine, lambda s: uploads.record(s, sha256, size))
    return {"sha256": sha256, "size": size, "stored": True}
