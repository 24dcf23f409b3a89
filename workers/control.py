"""The control worker: runs the workflows and the catalog activities. Any host will do."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.catalog import CatalogActivities
from activities.heartbeat import BEAT_EVERY_S
from activities.pruning import PruneActivities
from clients.catalog import CatalogClient
from core.arch import CONTROL_TASK_QUEUE
from workflows.pipeline import ImagePipeline
from workflows.prune import PruneTesting

# Catalog calls take seconds: on SIGTERM let them finish rather than retry them
# (deploy/systemd/icefloe-worker-control.service stops it after longer than this).
GRACEFUL_SHUTDOWN = timedelta(seconds=30)


def control_worker(client: Client, catalog: CatalogClient, executor: ThreadPoolExecutor) -> Worker:
    acts = CatalogActivities(catalog)
    prune = PruneActivities(catalog, client)
    return Worker(
        client,
        task_queue=CONTROL_TASK_QUEUE,
        workflows=[ImagePipeline, PruneTesting],
        activities=[
            acts.find_version,
            acts.check_inputs,
            acts.publish_version,
            acts.promote_version,
            acts.retire_version,
            prune.find_prune_candidates,
            prune.pipeline_running,
            prune.abandon_running,
        ],
        activity_executor=executor,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        # Every beat reaches the server, so a dead control worker is noticed in seconds.
        max_heartbeat_throttle_interval=timedelta(seconds=BEAT_EVERY_S),
    )
