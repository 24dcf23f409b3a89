"""The control worker: runs the workflows and the catalog activities. Any host will do."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from activities.catalog import CatalogActivities
from activities.heartbeat import BEAT_EVERY_S
from activities.hooks import HookActivities
from activities.pruning import PruneActivities
from activities.refresh import RefreshActivities
from clients.catalog import CatalogClient
from core.arch import CONTROL_TASK_QUEUE
from core.config import Settings
from workflows.deliver import DeliverNotice
from workflows.pipeline import ImagePipeline
from workflows.prune import PruneTesting
from workflows.refresh import Refresh

# Catalog calls take seconds: on SIGTERM let them finish rather than retry them
# (deploy/systemd/icefloe-worker-control.service stops it after longer than this).
GRACEFUL_SHUTDOWN = timedelta(seconds=30)


def control_worker(
    client: Client,
    catalog: CatalogClient,
    executor: ThreadPoolExecutor,
    images_dir: Path | None = None,
) -> Worker:
    """`images_dir`: the catalogue refreshes read; default ICEFLOE_IMAGES_DIR."""
    acts = CatalogActivities(catalog)
    prune = PruneActivities(catalog, client)
    settings = Settings()
    hooks = HookActivities(catalog, settings)
    refresh = RefreshActivities(
        client, images_dir or settings.images_dir, settings.refresh_max_parallel
    )
    return Worker(
        client,
        task_queue=CONTROL_TASK_QUEUE,
        workflows=[ImagePipeline, PruneTesting, Refresh, DeliverNotice],
        activities=[
            acts.find_version,
            acts.check_inputs,
            acts.publish_version,
            acts.promote_version,
            acts.find_hold,
            acts.check_gate,
            acts.retire_version,
            prune.find_prune_candidates,
            prune.pipeline_running,
            prune.abandon_running,
            refresh.load_catalogue,
            refresh.running_pipelines,
            refresh.sync_schedules,
            hooks.deliver,
            hooks.report_delivery,
            hooks.record_notice,
        ],
        activity_executor=executor,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        # Every beat reaches the server, so a dead control worker is noticed in seconds.
        max_heartbeat_throttle_interval=timedelta(seconds=BEAT_EVERY_S),
    )
