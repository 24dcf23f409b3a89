"""Prometheus metrics of one server process: requests by route and status with their latency,
uploads, feed renders, the catalog's versions by state, arches by delta state, check results
by state and webhook deliveries by state (counted when scraped); per image: its versions by
state, when it was last refreshed and its newest version's checks by cell (server_api.grid),
which deploy/prometheus/ alerts on.

Routes are labelled by their template (`/feeds/{secret}/...`), never the path itself, so a
private feed's secret never reaches a metric and the series stay few.
"""

import time
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.catalog import AssessmentState, Channel, DeltaState, Flavour, VersionState
from core.notices import DeliveryState
from server_api.models import Assessment, Delivery, Version, VersionArch
from server_api.status import catalogue_status
from server_api.workers_seen import WorkerWatch

UPLOAD_ROUTE = "/api/v1/files/{sha256}"
# Feeds answer in a millisecond, uploads of GiBs take minutes.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120, 600)


def _by_state(
    name: str, text: str, states: type[StrEnum], counts: Mapping[Any, int]
) -> GaugeMetricFamily:
    """One gauge per state of `states`, 0 for a state no row is in."""
    family = GaugeMetricFamily(name, text, labels=["state"])
    for state in states:
        family.add_metric([state.value], counts.get(state, 0))
    return family


class _VersionsByState(Collector):
    def __init__(self, engine: Engine, workers: WorkerWatch) -> None:
        self.engine = engine
        self.workers = workers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with Session(self.engine) as session:

            def count(column: Any) -> dict[Any, int]:
                return dict(session.exec(select(column, func.count()).group_by(col(column))).all())

            versions = count(Version.state)
            deltas = count(VersionArch.delta_state)
            assessments = count(Assessment.state)
            deliveries = count(Delivery.state)
        yield _by_state(
            "icefloe_catalog_versions", "Versions in the catalog, by state", VersionState, versions
        )
        yield _by_state(
            "icefloe_catalog_deltas",
            "Version arches by delta: pending (not made yet), made, none (could not be)",
            DeltaState,
            deltas,
        )
        yield _by_state(
            "icefloe_catalog_assessments",
            "Check results in the catalog, by state (not_applicable: the check does not apply)",
            AssessmentState,
            assessments,
        )
        yield _by_state(
            "icefloe_hook_deliveries",
            "Webhook deliveries, by state: pending, failing (being retried), delivered, failed",
            DeliveryState,
            deliveries,
        )
        yield from self._images()

    def _images(self) -> Iterator[GaugeMetricFamily]:
        versions = GaugeMetricFamily(
            "icefloe_versions", "Versions, by image and state", labels=["image", "state"]
        )
        refreshed = GaugeMetricFamily(
            "icefloe_image_last_refreshed_timestamp_seconds",
            "When the image's newest version was made, or a later refresh found it unchanged",
            labels=["image"],
        )
        checks = GaugeMetricFamily(
            "icefloe_newest_version_checks",
            "The image's newest version's checks on each arch, by cell "
            "(passed, failed, known-failure, running, not-run, not-applicable)",
            labels=["image", "arch", "cell"],
        )
        with Session(self.engine) as session:
            counts = session.exec(
                select(Version.image, Version.state, func.count()).group_by(
                    col(Version.image), col(Version.state)
                )
            ).all()
            found = catalogue_status(session)
        for image, state, n in counts:
            versions.add_metric([image, VersionState(state).value], n)
        for status in found:
            if status.refreshed_at is not None:
                refreshed.add_metric([status.image], status.refreshed_at.timestamp())
            grid = status.grid
            for arch, counted in ((a, grid.count(a)) for a in grid.arches) if grid else ():
                for cell, n in counted.items():
                    checks.add_metric([status.image, arch, cell.value], n)
        yield from (versions, refreshed, checks)
        up = GaugeMetricFamily(
            "icefloe_worker_up",
            "1 if a worker polled the arch's task queue lately, as Temporal saw it; no series "
            "while Temporal is unreachable",
            labels=["arch"],
        )
        for arch, seen in sorted(self.workers.up.items()):
            up.add_metric([arch], int(seen))
        yield up


class ServerMetrics:
    """One registry per app, so several servers in one process (tests) keep theirs apart."""

    def __init__(self, engine: Engine, workers: WorkerWatch) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "icefloe_http_requests",
            "Requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "icefloe_http_request_seconds",
            "Time to answer a request, by method and route template",
            ["method", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.upload_bytes = Counter(
            "icefloe_upload_bytes", "Bytes of file uploads accepted", registry=self.registry
        )
        self.feed_renders = Counter(
            "icefloe_feed_renders",
            "Feeds rendered after a catalog change, by channel and flavour",
            ["channel", "flavour"],
            registry=self.registry,
        )
        self.files_served = Counter(
            "icefloe_feed_file_bytes",
            "Bytes of feed files sent in full (GET), by ftype: tells a delta from a squashfs",
            ["kind"],
            registry=self.registry,
        )
        self.registry.register(_VersionsByState(engine, workers))

    def rendered(self, channel: Channel, flavour: Flavour | None) -> None:
        self.feed_renders.labels(channel.value, flavour.value if flavour else "both").inc()


def _template(scope: Scope) -> str:
    """The matched route's path with its parameters named (`/feeds/{secret}/...`); routers
    mounted under a prefix keep only their own part in `scope["route"]`, so rebuild it."""
    if scope.get("route") is None:
        return "unmatched"
    names = {str(value): name for name, value in scope.get("path_params", {}).items()}
    return "/".join(f"{{{names[s]}}}" if s in names else s for s in scope["path"].split("/"))


class MetricsMiddleware:
    """Pure ASGI (no buffering), so streamed uploads and downloads pass straight through."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app raises before answering

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            method = scope["method"]
            route = _template(scope)
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
            if route == UPLOAD_ROUTE and method == "PUT" and status == 201:
                headers = dict(scope["headers"])
                self.metrics.upload_bytes.inc(int(headers.get(b"content-length", b"0") or 0))
