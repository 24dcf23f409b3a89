"""Feeds and the files they list; LXD and Incus pull from here.

The same routes (index.json, images.json, their signed forms index.sjson and images.sjson,
the key that signs them, icefloe.asc, and files) answer under several base URLs, each
resolving to a (channel, flavour) on every request:
- `/channels/<channel>/` and `/channels/<channel>/fresh/<tag>/`: public channel feeds
  (both flavours). LXD caches a feed per base URL for an hour, so a test that must see
  a version published seconds ago uses a base URL of its own.
- `/feeds/<secret>/`: a consumer's private feed. The secret is in the path because LXD
  cannot send headers; it is checked on every request, so expiry, revocation and a
  change of channel apply at once.

Behind the project's nginx (ICEFLOE_SERVER_ACCEL_REDIRECT, deploy/nginx) a route still
decides (credential, channel, grace) but answers with `X-Accel-Redirect` to one of nginx's
internal locations, and nginx sends the bytes: a feed from the static tree once that shows
the catalog's generation, a file from the tree's links or else the store. Most private
feed requests do not get here at all: nginx checks the credential files server_api.edge
keeps and sends the current tree itself; these routes answer what it leaves (unknown,
revoked or expired credentials, trees behind the catalog, files of older trees).
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, NamedTuple

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.responses import FileResponse
from sqlmodel import Session

from core.catalog import Channel, Flavour
from server_api.deps import ServicesDep
from server_api.feeds import Feed, left_within
from server_api.services import Services
from server_api.sjson import KEY_NAME, SigningRefused
from server_api.static import CURRENT, STREAMS, StaticTrees, tree_name
from server_api.tokens import find_credential


class Source(NamedTuple):
    channel: Channel
    flavour: Flavour | None  # None: both
    # False for the pipeline's fresh URLs: a test launch must not build its image from a
    # cached base that a concurrent test of the same image is deleting (the chaos soak saw
    # LXD's xdelta3 fail on it, and the half-made images stay in the project).
    deltas: bool = True


async def public_channel(channel: Channel, services: ServicesDep) -> Source:
    if not services.settings.public_feeds:
        raise HTTPException(404, "public channel feeds are off here; ask for a private feed")
    return Source(channel, None)


async def fresh_channel(
    channel: Channel,
    services: ServicesDep,
    tag: Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$")],
) -> Source:
    """Any short tag will do; it only makes the URL new to LXD's cache. No delta items."""
    return (await public_channel(channel, services))._replace(deltas=False)


async def credential(secret: Annotated[str, Path(max_length=100)]) -> str:
    """A private feed's secret: the route looks it up in the same thread hop as the feed."""
    return secret


def _source(session: Session, resolved: Source | str) -> Source:
    """The source of a channel feed, or of the private feed whose secret `resolved` is."""
    if isinstance(resolved, Source):
        return resolved
    row = find_credential(session, resolved)
    if row is None:
        raise HTTPException(403, "this feed's credential is unknown, expired or revoked")
    return Source(Channel(row.channel), Flavour(row.flavour))


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match as RFC 9110 has it: `*`, or any listed tag equal to `etag` under weak
    comparison (a `W/` prefix is ignored). Feed and file ETags are hex, never with commas."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


# nginx's internal locations (deploy/nginx): the static trees' root and the store's.
ACCEL_STATIC = "/_icefloe/static"
ACCEL_STORE = "/_icefloe/store"


def _accel(services: Services) -> StaticTrees | None:
    """The static trees, when nginx sends what they hold."""
    return services.static if services.settings.accel_redirect else None


def _json(services: Services, request: Request, source: Source, feed: Feed, name: str) -> Response:
    static = _accel(services)
    if static is not None and source.deltas and static.shown() >= feed.generation:
        tree = tree_name(source.channel, source.flavour)
        uri = f"{ACCEL_STATIC}/{tree}/current/streams/v1/{name}"
        return Response(headers={"X-Accel-Redirect": uri})
    body, etag = feed.index if name == "index.json" else feed.images, feed.etag
    if not source.deltas and name == "images.json":
        body, etag = feed.without_deltas
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def _sjson(services: Services, request: Request, source: Source, feed: Feed, name: str) -> Response:
    """A signed form: from the static trees behind nginx (unless gpg failed when the tree was
    written), else signed once per feed here."""
    static, tree = _accel(services), tree_name(source.channel, source.flavour)
    if static is not None and source.deltas and services.streams.refused is None:
        written = static.root / tree / CURRENT / STREAMS / name
        if static.shown() >= feed.generation and written.exists():
            uri = f"{ACCEL_STATIC}/{tree}/{CURRENT}/{STREAMS}/{name}"
            return Response(headers={"X-Accel-Redirect": uri})
    try:
        body = services.streams.signed(feed, name, source.deltas)
    except SigningRefused as exc:
        raise HTTPException(503, str(exc)) from None
    # Signed again (a restart) the bytes differ, the signed feed not: a weak ETag.
    etag = (feed.etag if source.deltas else feed.without_deltas[1]).replace('"', '"s', 1)
    headers = {"ETag": f"W/{etag}", "Cache-Control": "no-cache"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/plain; charset=utf-8", headers=headers)


def _feed(services: Services, request: Request, resolved: Source | str, name: str) -> Response:
    """One worker-thread hop with one session: a hop costs more than the lookups."""
    with Session(services.engine) as session:
        source = _source(session, resolved)
        feed = services.feeds.get(session, source.channel, source.flavour)
    if name.endswith(".sjson"):
        return _sjson(services, request, source, feed, name)
    return _json(services, request, source, feed, name)


def _check(services: Services, secret: str) -> None:
    with Session(services.engine) as session:
        _source(session, secret)


def _file(services: Services, request: Request, resolved: Source | str, sha256: str) -> Response:
    """The `file` route's work, in one worker-thread hop with one session."""
    settings, store = services.settings, services.store
    with Session(services.engine) as session:
        source = _source(session, resolved)
        feed = services.feeds.get(session, source.channel, source.flavour)
        if not store.exists(sha256) or (
            sha256 not in feed.files
            and not left_within(session, source.channel, sha256, settings.channel_file_grace_s)
        ):
            raise HTTPException(404, f"no file {sha256} in the {source.channel} channel")
    etag = f'"{sha256}"'
    unchanged = etag_matches(request.headers.get("if-none-match"), etag)
    whole = "range" not in request.headers and not unchanged
    if request.method == "GET" and whole:
        served = services.metrics.files_served.labels(feed.kinds.get(sha256, "other"))
        served.inc(store.path(sha256).stat().st_size)
    if (static := _accel(services)) is not None:
        linked = static.files_dir(source.channel) / sha256
        uri = (
            f"{ACCEL_STATIC}/files/{source.channel}/{sha256}"
            if linked.exists()
            else f"{ACCEL_STORE}/{sha256[:2]}/{sha256}"
        )
        return Response(headers={"X-Accel-Redirect": uri})
    if unchanged:
        return Response(status_code=304, headers={"ETag": etag})
    return FileResponse(
        store.path(sha256), media_type="application/octet-stream", headers={"ETag": etag}
    )


def feed_router(resolve: Callable[..., Awaitable[Source | str]], tag: str) -> APIRouter:
    """index.json, images.json and files, for feeds whose source `resolve` finds."""
    router = APIRouter(tags=[tag])
    SourceDep = Annotated[Source | str, Depends(resolve)]

    @router.get("/streams/v1/index.json", operation_id=f"{resolve.__name__}_index")
    @router.head("/streams/v1/index.json", include_in_schema=False)
    async def index(source: SourceDep, services: ServicesDep, request: Request):
        return await anyio.to_thread.run_sync(_feed, services, request, source, "index.json")

    @router.get("/streams/v1/images.json", operation_id=f"{resolve.__name__}_images")
    @router.head("/streams/v1/images.json", include_in_schema=False)
    async def images(source: SourceDep, services: ServicesDep, request: Request):
        return await anyio.to_thread.run_sync(_feed, services, request, source, "images.json")

    @router.get("/streams/v1/index.sjson", operation_id=f"{resolve.__name__}_index_signed")
    @router.head("/streams/v1/index.sjson", include_in_schema=False)
    async def index_signed(source: SourceDep, services: ServicesDep, request: Request):
        """index.json clear-signed (OpenPGP), its paths naming the `.sjson` forms; 503 when
        the server's key is missing from its host."""
        return await anyio.to_thread.run_sync(_feed, services, request, source, "index.sjson")

    @router.get("/streams/v1/images.sjson", operation_id=f"{resolve.__name__}_images_signed")
    @router.head("/streams/v1/images.sjson", include_in_schema=False)
    async def images_signed(source: SourceDep, services: ServicesDep, request: Request):
        """images.json clear-signed (OpenPGP); 503 when the server's key is missing."""
        return await anyio.to_thread.run_sync(_feed, services, request, source, "images.sjson")

    @router.get(f"/streams/v1/{KEY_NAME}", operation_id=f"{resolve.__name__}_signing_key")
    @router.head(f"/streams/v1/{KEY_NAME}", include_in_schema=False)
    async def signing_key(source: SourceDep, services: ServicesDep) -> Response:
        """The public key the `.sjson` are signed with, ASCII-armored. Fetched from here it
        proves nothing: pin it on the mirror out of band (README: signed streams)."""
        if not isinstance(source, Source):  # a private feed's credential is checked
            await anyio.to_thread.run_sync(_check, services, source)
        if (key := services.streams.key) is None:
            raise HTTPException(503, "this server has no streams signing key")
        return Response(key.public_key, media_type="application/pgp-keys")

    @router.get("/files/{sha256}", operation_id=f"{resolve.__name__}_file")
    @router.head("/files/{sha256}", include_in_schema=False)
    async def file(
        source: SourceDep,
        sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
        services: ServicesDep,
        request: Request,
    ) -> Response:
        """HEAD, Range and If-Range are Starlette's; the ETag is the content's sha256.
        A file its version took out of the channel is still served for a while: hosts
        that cached the index before still list it."""
        return await anyio.to_thread.run_sync(_file, services, request, source, sha256)

    return router


# (prefix, router) pairs the app mounts.
MOUNTS = (
    ("/channels/{channel}", feed_router(public_channel, "channel feeds")),
    ("/channels/{channel}/fresh/{tag}", feed_router(fresh_channel, "channel feeds")),
    ("/feeds/{secret}", feed_router(credential, "private feeds")),
)
