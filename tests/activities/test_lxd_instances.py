"""Instance bookkeeping against real LXD while another worker changes the same project:
two arch workers on one host share the test project, so each lists instances the
other is deleting."""

import threading
import uuid

import pylxd
import pytest

from activities.lxd_test.instances import forget_image
from activities.lxd_test.janitor import labelled
from clients.lxd import connect_lxd
from core.config import Settings

pytestmark = pytest.mark.lxd

CHURN_CYCLES = 150  # bounds the test: instances the other "worker" creates and deletes


def churn(settings: Settings, stop: threading.Event, cycles: list[int]) -> None:
    """Another worker: create and delete instances (empty ones: no image to pull)."""
    lxd = connect_lxd(settings)
    prefix = f"icefloe-churn-{uuid.uuid4().hex[:8]}"
    while not stop.is_set() and cycles[0] < CHURN_CYCLES:
        name = f"{prefix}-{cycles[0]}"
        lxd.instances.create({"name": name, "source": {"type": "none"}}, wait=True)
        lxd.instances.get(name).delete(wait=True)
        cycles[0] += 1


def test_listing_instances_tolerates_another_worker_deleting_its_own(
    lxd: pylxd.Client, settings: Settings
) -> None:
    stop = threading.Event()
    cycles = [0]
    other = threading.Thread(target=churn, args=(settings, stop, cycles), daemon=True)
    other.start()
    passes = 0
    try:
        while other.is_alive():
            assert not forget_image(lxd, "0" * 64), "no such image: nothing to forget"
            assert labelled(lxd, f"nobody@{uuid.uuid4().hex}") == []
            passes += 1
    finally:
        stop.set()
        other.join(60)
    assert cycles[0] == CHURN_CYCLES, "the other worker's create/delete loop died"
    assert passes > 0
