"""Refreshes on real parts, for tests and benchmarks: a Temporal namespace of the caller's own
with a control worker reading the caller's catalogue directory and an x86_64 arch worker, so
no other worker takes its tasks."""

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.client import Client

from clients.catalog import CatalogClient
from clients.lxd import connect_lxd
from core.config import Settings
from harness.remote import namespace
from workers.arch import arch_worker
from workers.control import control_worker


@asynccontextmanager
async def refreshing(
    temporal: Client,
    name: str,
    catalog: CatalogClient,
    settings: Settings,
    images_dir: Path,
    control: bool = True,
) -> AsyncIterator[Client]:
    """Namespace `name`'s client, its workers running (the control one unless `control`
    is False: a test then runs it as a process of its own)."""
    ns = await namespace(temporal, name)
    with ThreadPoolExecutor(max_workers=16) as executor:
        arch = arch_worker(ns, "x86_64", catalog, lambda: connect_lxd(settings), settings, executor)
        async with arch:
            if not control:
                yield ns
                return
            async with control_worker(ns, catalog, executor, images_dir=images_dir):
                yield ns
