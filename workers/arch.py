"""An arch worker: builds and tests one arch on an LXD host that runs that arch."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pylxd
from temporalio.client import Client
from temporalio.worker import Worker

from activities.build.activity import BuildActivities
from activities.lxd_test.activity import TestActivities
from core.arch import task_queue
from core.catalog_client import CatalogClient
from core.config import Settings
from core.lxd import checked_arch


def arch_worker(
    client: Client,
    arch: str,
    catalog: CatalogClient,
    lxd: Callable[[], pylxd.Client],
    settings: Settings,
    executor: ThreadPoolExecutor,
) -> Worker:
    arch = checked_arch(arch, lxd())
    build = BuildActivities(catalog, settings)
    test = TestActivities(catalog, lxd, settings)
    return Worker(
        client,
        task_queue=task_queue(arch),
        activities=[build.build_image, test.test_image],
        activity_executor=executor,
        max_concurrent_activities=4,
    )
