"""Deletions after the verdicts run beside the activity: what the worker has in flight can be
waited for, a failure is logged for the janitor, never raised into a finished activity; a
suite hands its instance over only once every verdict is in (real LXD)."""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pylxd
import pytest
from temporalio.client import Client

from activities.lxd_test.checks import suite
from activities.lxd_test.cleanup import Cleanups
from activities.lxd_test.execs import ExecFault
from activities.lxd_test.faults import MachineryFault
from activities.lxd_test.instances import Target, forget_image, remove
from activities.lxd_test.suite import Check, run_suite
from clients.catalog import CatalogClient
from clients.lxd import connect_lxd
from core.config import Settings
from core.pipeline import CheckOutcome
from harness.lxd import launch_in_testing
from harness.publish import busybox_spec, publish
from tests.support import SCOPE
from workers.arch import arch_worker


def test_a_deletion_runs_beside_the_caller_and_wait_sees_it_through() -> None:
    cleanups, release, ran = Cleanups(), threading.Event(), threading.Event()

    def work() -> None:
        release.wait()
        ran.set()

    thread = cleanups.start("deleting icefloe-x8664-0", work)
    assert not thread.daemon, "an interpreter that exits waits for its deletions"
    assert not cleanups.wait(timeout_s=0.01), "still running"
    assert not ran.is_set()
    release.set()
    assert cleanups.wait()
    assert ran.is_set()


def test_wait_for_waits_only_for_the_deletions_of_those_names() -> None:
    cleanups, release = Cleanups(), threading.Event()
    cleanups.start("deleting icefloe-x8664-a", release.wait, ["icefloe-x8664-a"])
    assert cleanups.wait_for(["icefloe-x8664-b"], timeout_s=0), "another name: no wait"
    assert not cleanups.wait_for(["icefloe-x8664-a"], timeout_s=0.01), "its own: still running"
    release.set()
    assert cleanups.wait_for(["icefloe-x8664-a"])


def test_a_failed_deletion_is_logged_for_the_janitor(caplog: pytest.LogCaptureFixture) -> None:
    cleanups = Cleanups()

    def work() -> None:
        raise RuntimeError("LXD said no")

    with caplog.at_level(logging.INFO, logger="activities.lxd_test.cleanup"):
        cleanups.start("deleting icefloe-i686-0", work)
        assert cleanups.wait()
    (record,) = caplog.records
    assert record.getMessage() == (
        "deleting icefloe-i686-0 failed; the janitor will delete what is left"
    )
    assert record.exc_info and "LXD said no" in str(record.exc_info[1])


def test_a_finished_deletion_says_how_long_it_took(caplog: pytest.LogCaptureFixture) -> None:
    cleanups = Cleanups()
    with caplog.at_level(logging.INFO, logger="activities.lxd_test.cleanup"):
        cleanups.start("deleting icefloe-i686-1", lambda: None)
        assert cleanups.wait()
    assert caplog.records[0].getMessage().startswith("deleting icefloe-i686-1: done in ")


@pytest.mark.lxd
def test_a_judged_instance_is_left_to_delete_later_and_a_faulted_one_goes_at_once(
    lxd: pylxd.Client, catalog: CatalogClient, settings: Settings, tmp_path: Path
) -> None:
    image = busybox_spec("later", checks=["boots"])
    serial, fp = publish(catalog, image, build_in=tmp_path, to=("testing",))
    spec = launch_in_testing(catalog, settings, image, serial, fp, temporal=SCOPE)
    seen: list[CheckOutcome] = []
    later: list[str] = []
    try:
        run_suite(lxd, spec, suite(image.checks), seen.append, lambda _: None, 600, later.append)
        assert [(o.check, o.state) for o in seen] == [("boots", "running"), ("boots", "passed")]
        assert later == [spec.name]
        assert lxd.instances.exists(spec.name), "every verdict is in: the caller deletes it"
        cleanups = Cleanups()
        cleanups.start(f"deleting {spec.name}", lambda: remove(lxd, spec.name))
        assert cleanups.wait()
        assert not lxd.instances.exists(spec.name)

        def broken(_: Target) -> tuple[bool, str]:
            raise ExecFault("the exec transport broke")

        later.clear()
        with pytest.raises(MachineryFault, match="the exec transport broke"):
            run_suite(
                lxd, spec, [Check("boots", broken)], seen.append, lambda _: None, 600, later.append
            )
        assert later == [], "a fault is no verdict: nothing is left for later"
        assert not lxd.instances.exists(spec.name), "deleted before the fault was raised"
    finally:
        remove(lxd, spec.name)
        forget_image(lxd, fp)


@pytest.mark.lxd
@pytest.mark.temporal
async def test_an_arch_worker_that_stops_sees_its_deletions_through(
    temporal: Client, catalog: CatalogClient, settings: Settings
) -> None:
    """`icefloe worker` ends with os._exit, which would kill a deletion still running."""
    done: list[str] = []

    def work() -> None:
        time.sleep(0.5)  # LXD's stop, about a second
        done.append("deleted")

    with ThreadPoolExecutor(max_workers=4) as executor:
        worker = arch_worker(
            temporal, "x86_64", catalog, lambda: connect_lxd(settings), settings, executor
        )
        async with worker:
            worker.cleanups.start("deleting icefloe-x8664-0", work)
        assert done == ["deleted"], "the worker stopped only once its deletion had ended"
