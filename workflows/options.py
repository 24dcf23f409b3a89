"""Activity options the workflows share: one retry policy, typed configs per kind of work."""

from datetime import timedelta
from typing import Unpack

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from core.arch import CONTROL_TASK_QUEUE

RETRY = RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=30))

# Activities heartbeat from a side thread every 2 s (activities/heartbeat.py), whatever they
# block on: five missed beats mean the worker is gone, and the retry starts on another
# worker about 10 s after it died (bench/recovery.py), not at the start-to-close timeout.
HEARTBEAT_TIMEOUT = timedelta(seconds=10)

# Catalog and Temporal calls on the control worker: short (the catalog client gives up
# after 60 s), and any host will do.
CONTROL = workflow.ActivityConfig(
    task_queue=CONTROL_TASK_QUEUE,
    start_to_close_timeout=timedelta(minutes=2),
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    retry_policy=RETRY,
)

# Working out an arch's inputs (reading a .deb, one InRelease download): on the arch's queue.
INPUTS = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(minutes=2),
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    retry_policy=RETRY,
)

# Arch work is cleaned up before the workflow goes on when it is cancelled.
BUILD = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(hours=2),
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    retry_policy=RETRY,
    cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
)
TEST = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(minutes=30),
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    retry_policy=RETRY,
    cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
)


def options(
    config: workflow.ActivityConfig, **extra: Unpack[workflow.ActivityConfig]
) -> workflow.ActivityConfig:
    """`config` with some options added or replaced (a summary, the arch's task queue)."""
    merged = config.copy()
    merged.update(extra)
    return merged
