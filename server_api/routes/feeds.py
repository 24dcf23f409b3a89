"""Channel feeds and the files they list. LXD pulls from here."""

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse

from core.models import Channel
from server_api.deps import FeedsDep, SessionDep, StoreDep
from server_api.feeds import Feed

router = APIRouter(prefix="/channels/{channel}", tags=["feeds"])


def _json(request: Request, feed: Feed, body: bytes) -> Response:
    headers = {"ETag": feed.etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == feed.etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.get("/streams/v1/index.json")
def index(channel: Channel, request: Request, session: SessionDep, feeds: FeedsDep) -> Response:
    feed = feeds.get(session, channel)
    return _json(request, feed, feed.index)


@router.get("/streams/v1/images.json")
def images(channel: Channel, request: Request, session: SessionDep, feeds: FeedsDep) -> Response:
    feed = feeds.get(session, channel)
    return _json(request, feed, feed.images)


@router.get("/files/{sha256}")
@router.head("/files/{sha256}", operation_id="file_head", include_in_schema=False)
def file(
    channel: Channel, sha256: str, session: SessionDep, feeds: FeedsDep, store: StoreDep
) -> FileResponse:
    if sha256 not in feeds.get(session, channel).files:
        raise HTTPException(404, f"no file {sha256} in the {channel} channel")
    return FileResponse(
        store.path(sha256), media_type="application/octet-stream", headers={"ETag": f'"{sha256}"'}
    )
