"""The FastAPI application."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlmodel import Session

from core.config import ServerSettings, Settings
from server_api.badges import BadgeCache
from server_api.catalog import CatalogError
from server_api.csrf import FormGuard, FormTokens, load_key
from server_api.db import make_engine
from server_api.deltas import DeltaMaker
from server_api.deps import LoginRequired
from server_api.dispatch import Dispatcher
from server_api.edge import EdgeFiles
from server_api.feeds import FeedCache
from server_api.guard import RequestGuard
from server_api.metrics import MetricsMiddleware, ServerMetrics
from server_api.provenance import ProvenanceKey, SigningUnavailable
from server_api.routes import (
    access,
    attestations,
    checks,
    feeds,
    files,
    hooks,
    known,
    ops,
    pages,
    pipelines,
    refreshes,
    revoke,
    status,
    versions,
)
from server_api.services import Services, TemporalLink, attach
from server_api.sjson import StreamSigner
from server_api.static import StaticTrees, StaticWriter
from server_api.store import FileStore
from server_api.tokens import AccessError
from server_api.workers_seen import WorkerWatch

log = logging.getLogger(__name__)


def _services(settings: ServerSettings) -> Services:
    engine = make_engine(settings.db_url, settings.threads, settings.db_overflow)
    store = FileStore(settings.files_dir)
    store.clean_incoming(settings.body_idle_timeout_s)
    every = Settings()
    temporal = TemporalLink(every)
    workers = WorkerWatch(temporal.client, engine, settings.worker_watch_s)
    metrics = ServerMetrics(engine, workers)
    provenance = ProvenanceKey(settings.provenance_key_path)
    provenance.ensure(engine)
    streams = StreamSigner.open(settings.gnupg_home, engine)
    return Services(
        settings=settings,
        engine=engine,
        store=store,
        metrics=metrics,
        feeds=FeedCache(on_render=metrics.rendered),
        streams=streams,
        static=StaticTrees(
            settings.static_root,
            store,
            streams,
            settings.channel_file_grace_s,
            settings.public_feeds,
        ),
        edge=EdgeFiles(settings.static_root),
        deltas=DeltaMaker(engine, store, settings.delta_lease_s, settings.delta_poll_s),
        temporal=temporal,
        badges=BadgeCache(),
        workers=workers,
        forms=FormTokens(load_key(settings.state_dir / "form.key")),
        dispatcher=Dispatcher(engine, temporal, every, settings.url),
        provenance=provenance,
    )


def _resync_edge(services: Services) -> None:
    with Session(services.engine) as session:
        services.edge.resync(session)


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or Settings().server
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    services = _services(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The pool has a connection for every worker thread (see server_api.deps).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        writer = StaticWriter(
            services.static, services.engine, services.feeds, settings.static_poll_s
        )
        writer.start()
        services.edge.watch(services.engine)
        await anyio.to_thread.run_sync(_resync_edge, services)
        services.deltas.start()
        services.dispatcher.start()
        watch = settings.worker_watch_s > 0
        watching = asyncio.create_task(services.workers.run()) if watch else None
        yield
        if watching is not None:
            watching.cancel()
        await services.dispatcher.stop()
        await anyio.to_thread.run_sync(services.deltas.stop)
        services.edge.unwatch()
        writer.stop()
        await anyio.to_thread.run_sync(services.streams.close)
        services.engine.dispose()

    app = FastAPI(
        title="Icefloe image server",
        summary="Catalog, verified file store and simplestreams channel feeds for LXD and Incus.",
        version="0.1.0",
        lifespan=lifespan,
        # Served by server_api.routes.ops, which keeps them private when the feeds are.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    attach(app, services)
    app.add_middleware(FormGuard, tokens=services.forms, refuse=pages.form_refused)
    app.add_middleware(RequestGuard, settings=settings, engine=services.engine)
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)

    @app.exception_handler(CatalogError)
    async def _catalog_error(_: Request, exc: CatalogError) -> JSONResponse:
        return JSONResponse({"detail": exc.message, **exc.fields}, status_code=exc.status_code)

    @app.exception_handler(SigningUnavailable)
    async def _unsigned(_: Request, exc: SigningUnavailable) -> JSONResponse:
        log.error("%s", exc.message)
        return JSONResponse({"detail": exc.message}, status_code=503)

    @app.exception_handler(AccessError)
    async def _access_error(_: Request, exc: AccessError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict:
        return {"ok": True}

    app.include_router(files.router)
    app.include_router(versions.router)
    app.include_router(attestations.router)
    app.include_router(checks.router)
    app.include_router(revoke.router)
    app.include_router(known.router)
    app.include_router(pipelines.router)
    app.include_router(refreshes.router)
    app.include_router(access.router)
    app.include_router(ops.router)
    app.include_router(hooks.router)
    app.include_router(pages.router)
    app.include_router(status.router)
    app.add_exception_handler(LoginRequired, pages.login_required)
    app.mount("/assets", StaticFiles(directory=pages.ASSETS_DIR), name="assets")
    for prefix, router in feeds.MOUNTS:
        app.include_router(router, prefix=prefix)
    return app
