"""The pipeline on real Temporal, LXD and image server with real images: a Debian image built
with debootstrap reaches active; an image without networking never does; a test worker
killed in the middle of a check is replaced and the pipeline completes, leaving nothing."""

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pylxd
import pytest
from temporalio.client import Client, WorkflowFailureError

from activities.lxd_test.instances import LABEL, listed
from clients.catalog import CatalogClient
from clients.lxd import ArchNotSupported, connect_lxd
from core.catalog import VersionView
from core.config import REPO_DIR, Settings
from core.images import load_image
from core.pipeline import PipelineInput
from harness.processes import stop
from harness.publish import busybox_spec
from harness.servers import RunningServer
from harness.waiting import until
from harness.workers import (
    arch_worker_process,
    assessed,
    at_the_slow_check,
    check_state,
    own_namespace,
)
from tests.support import assert_no_failed_attempts, nothing_left
from workers.arch import arch_worker
from workflows.trigger import new_serial, start_pipeline

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]


def instances_of(lxd: pylxd.Client, serial: str) -> list[str]:
    return [i.name for i in listed(lxd) if i.config.get(f"{LABEL}serial") == serial]


def leftovers(lxd: pylxd.Client, version: VersionView) -> list[str]:
    """Instances of this version and cached copies of its images still in the test project."""
    fingerprints = {a.fingerprint for a in version.arches}
    images = [i.fingerprint for i in lxd.images.all() if i.fingerprint in fingerprints]
    return instances_of(lxd, version.serial) + images


async def test_debian_image_built_with_debootstrap_reaches_active(
    temporal: Client, workers: list[str], catalog: CatalogClient, settings: Settings
) -> None:
    image = load_image(REPO_DIR / "images" / "debian-bookworm.yaml")
    image = image.model_copy(update={"arches": ["x86_64"]})
    serial = new_serial()

    handle = await start_pipeline(temporal, PipelineInput(spec=image, serial=serial))
    result = await handle.result()

    assert result.state == "active", result.message
    await assert_no_failed_attempts(handle)
    version = catalog.version(image.name, serial)
    checks = assessed(version)
    na = {"ipv6": "not_applicable", "cloud-init": "not_applicable"}
    assert {c: s for c, (s, _) in checks.items()} == {
        c: na.get(c, "passed") for c in image.required_checks
    }
    assert checks["init"][1].startswith("systemd: running after")
    assert checks["ipv4"][1].startswith("eth0: 198.51.100.")
    assert checks["dns"][1].startswith("nameserver 198.51.100.1\nicefloe-x8664-")
    assert checks["dns"][1].endswith("(this instance)")
    assert "offers no IPv6" in checks["ipv6"][1]
    assert checks["cloud-init"][1] == "the image has no cloud-init"
    assert checks["journal"][1].startswith("no failed units, no core dumps")
    assert checks["reboot"][1].startswith("restarted in ")
    assert "\ninit: systemd: running after " in checks["reboot"][1]
    assert "\njournal: no failed units, no core dumps" in checks["reboot"][1]
    assert all(a.duration_s > 0 for a in version.assessments if a.check != "ipv6")
    lxd = connect_lxd(settings)
    await nothing_left(lambda: leftovers(lxd, version), f"test instance of {version.serial}")
    # The manifest is what dpkg installed in the rootfs: minbase and the image's packages.
    (manifest,) = catalog.manifest(image.name, serial).arches
    installed = {p.name: p.version for p in manifest.packages or []}
    assert {"libc6", "dpkg", "systemd-sysv", "iproute2", "ifupdown"} <= installed.keys()
    assert len(installed) > 50 and all(installed.values())


async def test_image_without_network_fails_the_network_check_and_never_goes_active(
    temporal: Client, workers: list[str], catalog: CatalogClient, settings: Settings
) -> None:
    image = busybox_spec(
        "no-network",
        network="none",
        checks=["boots", "init", {"kind": "ipv4", "timeout_s": 5}, "stop"],
    )
    serial = new_serial()
    # Expire at once instead of waiting days for an operator's retry.
    inp = PipelineInput(spec=image, serial=serial, expire_after_s=1)
    result = await (await start_pipeline(temporal, inp)).result()

    assert result.state != "active"
    version = catalog.version(image.name, serial)
    assert version.state != "active"
    checks = assessed(version)
    assert checks["boots"][0] == checks["init"][0] == checks["stop"][0] == "passed", checks
    state, evidence = checks["ipv4"]
    assert state == "failed"
    assert "no global inet address on eth0 within 5s" in evidence
    inside = evidence.split("ip addr show eth0:\n")[1]
    assert "eth0" in inside and "inet " not in inside.split("ip -4 route:")[0]
    assert catalog.missing_checks(image.name, serial) == {"x86_64": ["ipv4"]}
    lxd = connect_lxd(settings)
    await nothing_left(lambda: leftovers(lxd, version), f"test instance of {version.serial}")


async def test_cancelled_pipeline_deletes_its_test_instance(
    temporal: Client, workers: list[str], catalog: CatalogClient, settings: Settings
) -> None:
    image = busybox_spec(
        "cancelled",
        checks=["boots", {"name": "slow", "command": "sleep 60", "timeout_s": 90}],
    )
    serial = new_serial()
    lxd = connect_lxd(settings)
    handle = await start_pipeline(temporal, PipelineInput(spec=image, serial=serial))
    await until(
        lambda: asyncio.to_thread(lambda: check_state(catalog, image, serial, "slow") == "running"),
        "the slow check to start",
        120,
        every_s=0.2,
    )
    assert instances_of(lxd, serial)
    started = time.monotonic()
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert time.monotonic() - started < 30, "cancellation reached the activity mid-check"
    assert leftovers(lxd, catalog.version(image.name, serial)) == []


async def test_arch_worker_refuses_an_arch_its_lxd_cannot_run(
    temporal: Client, catalog: CatalogClient, settings: Settings
) -> None:
    with ThreadPoolExecutor(max_workers=1) as executor, pytest.raises(ArchNotSupported) as err:
        arch_worker(temporal, "arm64", catalog, lambda: connect_lxd(settings), settings, executor)
    assert "not aarch64: start the worker for that arch on a host of that arch" in str(err.value)


async def test_killed_test_worker_is_replaced_and_the_pipeline_completes_leaving_nothing(
    temporal: Client,
    image_server: RunningServer,
    catalog: CatalogClient,
    settings: Settings,
    tmp_path: Path,
) -> None:
    client = await own_namespace(temporal)
    image = busybox_spec(
        "crash",
        checks=["boots", {"name": "slow", "command": "sleep 15"}, "stop"],
    )
    serial = new_serial()
    lxd = connect_lxd(settings)
    log = tmp_path / "worker.log"
    first = arch_worker_process(temporal, image_server, settings, log)
    second = None
    try:
        async with at_the_slow_check(client, catalog, image, serial) as handle:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            assert instances_of(lxd, serial), "the killed worker left its instance"

            second = arch_worker_process(temporal, image_server, settings, log)
            result = await asyncio.wait_for(handle.result(), 300)
    finally:
        for proc in (first, second):
            if proc:
                stop(proc, 10)

    assert result.state == "active", f"{result.message}\n{log.read_text()[-3000:]}"
    outcomes = {c.check: c for c in result.tests[0].checks}
    assert outcomes["boots"].skipped, "passed before the crash: not run again"
    assert not outcomes["slow"].skipped and outcomes["slow"].state == "passed"
    with pytest.raises(AssertionError, match="attempt 2 after 'activity Heartbeat timeout'"):
        await assert_no_failed_attempts(handle)  # the one retry the kill made
    version = catalog.version(image.name, serial)
    await nothing_left(lambda: leftovers(lxd, version), f"test instance of {serial}")


async def test_sigterm_lets_the_running_test_finish_then_the_worker_exits(
    temporal: Client,
    image_server: RunningServer,
    catalog: CatalogClient,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """A service manager stopping an arch worker mid-test: no retry, no lost work."""
    client = await own_namespace(temporal)
    image = busybox_spec("sigterm", checks=["boots", {"name": "slow", "command": "sleep 8"}])
    serial = new_serial()
    log = tmp_path / "worker.log"
    worker = arch_worker_process(
        temporal, image_server, settings, log, ICEFLOE_GRACEFUL_SHUTDOWN_S="120"
    )
    try:
        async with at_the_slow_check(client, catalog, image, serial) as handle:
            worker.send_signal(signal.SIGTERM)
            result = await asyncio.wait_for(handle.result(), 120)
            code = await asyncio.to_thread(worker.wait, 60)
    finally:
        stop(worker, 0)

    assert code == 0, log.read_text()[-3000:]
    assert result.state == "active", f"{result.message}\n{log.read_text()[-3000:]}"
    assert {c.check: c.state for c in result.tests[0].checks} == {
        "boots": "passed",
        "slow": "passed",
    }
    await assert_no_failed_attempts(handle)
    # The worker saw its deferred deletion through before exiting: nobody else would.
    assert not leftovers(connect_lxd(settings), catalog.version(image.name, serial))
