"""Refreshes on real parts, for tests and benchmarks: a Temporal namespace of the caller's own
with a control worker reading the caller's catalogue directory and arch workers, so no other
worker takes its tasks; small busybox catalogues (one-arch definitions that build and boot in
seconds, one whose check fails for real); and what a refresh's pipelines did, read from their
histories."""

import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from clients.catalog import CatalogClient
from clients.lxd import connect_lxd
from core.config import Settings
from harness.remote import namespace
from workers.arch import arch_worker
from workers.control import control_worker

Span = tuple[datetime, datetime]


@asynccontextmanager
async def refreshing(
    temporal: Client,
    name: str,
    catalog: CatalogClient,
    settings: Settings,
    images_dir: Path,
    control: bool = True,
    arches: Sequence[str] = ("x86_64",),
) -> AsyncIterator[Client]:
    """Namespace `name`'s client, its workers running (the control one unless `control`
    is False: a test then runs it as a process of its own)."""
    ns = await namespace(temporal, name)
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with AsyncExitStack() as stack:
            for arch in arches:
                conn = lambda: connect_lxd(settings)  # noqa: E731
                await stack.enter_async_context(
                    arch_worker(ns, arch, catalog, conn, settings, executor)
                )
            if control:
                await stack.enter_async_context(
                    control_worker(ns, catalog, executor, images_dir=images_dir)
                )
            yield ns


@dataclass
class Activities:
    """Per activity type, when each attempt that ended ran; attempts after the first."""

    spans: dict[str, list[Span]] = field(default_factory=dict)
    retried: list[str] = field(default_factory=list)


async def activities(ns: Client, workflow_ids: Sequence[str]) -> Activities:
    out = Activities()
    for wf_id in workflow_ids:
        names: dict[int, str] = {}
        started: dict[int, datetime] = {}
        async for e in ns.get_workflow_handle(wf_id).fetch_history_events():
            at = e.event_time.ToDatetime()
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                names[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
            elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                attrs = e.activity_task_started_event_attributes
                started[attrs.scheduled_event_id] = at
                if attrs.attempt > 1:
                    out.retried.append(f"{wf_id}: {names[attrs.scheduled_event_id]}")
            elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                sid = e.activity_task_completed_event_attributes.scheduled_event_id
                out.spans.setdefault(names[sid], []).append((started[sid], at))
            elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
                sid = e.activity_task_failed_event_attributes.scheduled_event_id
                out.spans.setdefault(names[sid], []).append((started[sid], at))
    return out


def most_at_once(spans: Sequence[Span]) -> int:
    """The most of these spans open at one moment."""
    return max((len([1 for s, c in spans if s <= start < c]) for start, _ in spans), default=0)


# A check that fails inside the instance, for real: the image's verdict, not a fault.
ALWAYS_FAILS = {"name": "always-fails", "command": "false"}


def definition(release: str, checks: list | None = None, **extra: object) -> dict:
    return {
        "os": "busybox",
        "release": release,
        "arches": ["x86_64"],
        "builder": "busybox",
        "checks": checks or ["boots"],
        **extra,
    }


def write(directory: Path, name: str, fields: dict) -> str:
    """The definition file `name`.yaml; returns its image's name."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(fields))
    return f"{fields['os']}:{fields['release']}:{fields.get('variant', 'default')}"


def unique(prefix: str) -> str:
    """A release no other test (or earlier run on this server) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
