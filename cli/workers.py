"""`icefloe worker control` and `icefloe worker arch ARCH`: poll a task queue until SIGINT or
SIGTERM, then shut down gracefully. The workers' modules load only when one runs."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from temporalio.client import Client

from cli.args import Commands, command
from clients.catalog import CatalogClient
from clients.lxd import checked_arch, connect_lxd
from clients.temporal import connect, metrics_runtime
from clients.temporal import register as register_search_attributes
from core.config import Settings

if TYPE_CHECKING:
    from temporalio.worker import Worker

    from workers.arch import ArchWorker

# Builds the worker from what every worker has: a client, the catalog, settings, threads.
Make = Callable[[Client, CatalogClient, Settings, ThreadPoolExecutor], "Worker | ArchWorker"]


async def serve(role: str, make: Make, set_up: bool = False) -> int:
    settings = Settings()
    runtime = metrics_runtime(settings.metrics_address) if settings.metrics_address else None
    client = await connect(settings, runtime)
    catalog = CatalogClient(settings)
    if set_up:  # the pipelines it runs set these; a namespace without them refuses every start
        await register_search_attributes(client)
    with ThreadPoolExecutor(max_workers=16) as executor:
        worker = make(client, catalog, settings, executor)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        async with worker:  # leaving the block shuts the worker down gracefully
            print(f"icefloe {role} worker polling {worker.task_queue}", flush=True)
            await stop.wait()
    return 0


def cmd_control(_: argparse.Namespace) -> int:
    from workers.control import control_worker

    def make(
        client: Client, catalog: CatalogClient, _: Settings, pool: ThreadPoolExecutor
    ) -> Worker:
        return control_worker(client, catalog, pool)

    return asyncio.run(serve("control", make, set_up=True))


def cmd_arch(args: argparse.Namespace) -> int:
    from workers.arch import arch_worker

    checked_arch(args.arch, connect_lxd(Settings()))  # a bad or foreign arch: before Temporal

    def make(
        client: Client, catalog: CatalogClient, settings: Settings, pool: ThreadPoolExecutor
    ) -> ArchWorker:
        return arch_worker(
            client, args.arch, catalog, lambda: connect_lxd(settings), settings, pool
        )

    return asyncio.run(serve("arch", make))


def register(commands: Commands) -> None:
    worker = commands.add_parser("worker", help="run a worker")
    roles = worker.add_subparsers(dest="role", required=True)
    command(roles, "control", cmd_control, help="run the pipelines and the catalog activities")
    arch = command(roles, "arch", cmd_arch, help="build and test on this host's LXD")
    arch.add_argument("arch", metavar="ARCH", help="x86_64, i686, aarch64, ...")
