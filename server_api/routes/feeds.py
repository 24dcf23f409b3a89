"""Channel feeds and the files they list. LXD pulls from here.

Each channel answers at `/channels/<channel>/` and, identically, at
`/channels/<channel>/fresh/<tag>/`. LXD caches a feed per base URL for an hour, so
a test that must see a version published seconds ago uses a base URL of its own.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.responses import FileResponse

from core.models import Channel
from server_api.deps import FeedsDep, SessionDep, StoreDep
from server_api.feeds import Feed

router = APIRouter(tags=["feeds"])


def _fresh_tag(tag: Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$")]) -> None:
    """Any short tag will do; it only makes the URL new to LXD's cache."""


# (prefix, dependencies) under which the router is mounted.
MOUNTS = (("/channels/{channel}", []), ("/channels/{channel}/fresh/{tag}", [Depends(_fresh_tag)]))


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
