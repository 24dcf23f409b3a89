"""Debian 13 (trixie) and unstable (sid), default and cloud variants, each through the whole
pipeline on real Temporal, LXD and image server: built by debootstrap from deb.debian.org on
x86_64 and i686, published, tested and promoted to active. The four pipelines run at once;
the builds of one arch share that arch's debootstrap cache, each through a copy of its own
(activities/builders/debootstrap.py, `borrowed_cache`)."""

import asyncio

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from clients.catalog import CatalogClient
from core.catalog import SATISFIED
from core.config import REPO_DIR, Settings
from core.images import load_image
from core.pipeline import PipelineInput, PipelineResult
from tests.support import assert_no_failed_attempts, borrow_debootstrap_cache
from workflows.trigger import new_serial, start_pipeline

# Eight debootstrap builds (four per arch at once) and their tests: 28 minutes on a 2-core
# host at load 25-35 (other test runs); pytest's default 600 s is too short.
pytestmark = [pytest.mark.lxd, pytest.mark.temporal, pytest.mark.slow, pytest.mark.timeout(2400)]

DEFINITIONS = [
    "debian-trixie.yaml",
    "debian-trixie-cloud.yaml",
    "debian-sid.yaml",
    "debian-sid-cloud.yaml",
]


async def activity_seconds(handle: WorkflowHandle) -> dict[str, float]:
    """Seconds from start to end of each activity the pipeline ran, by `name@task queue`
    (build and test activities run on their arch's queue). Printed, never asserted."""
    scheduled: dict[int, str] = {}
    started: dict[int, float] = {}
    took: dict[str, float] = {}
    async for e in handle.fetch_history_events():
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = e.activity_task_scheduled_event_attributes
            scheduled[e.event_id] = f"{a.activity_type.name}@{a.task_queue.name}"
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[e.activity_task_started_event_attributes.scheduled_event_id] = (
                e.event_time.ToDatetime().timestamp()
            )
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sid = e.activity_task_completed_event_attributes.scheduled_event_id
            name = scheduled[sid]
            took[name] = took.get(name, 0) + e.event_time.ToDatetime().timestamp() - started[sid]
    return took


async def test_trixie_and_sid_reach_active_on_both_arches(
    temporal: Client, workers: list[str], catalog: CatalogClient, settings: Settings
) -> None:
    assert {"x86_64", "i686"} <= set(workers), f"this host runs only {workers}"
    borrow_debootstrap_cache(settings.state_dir)
    images = [load_image(REPO_DIR / "images" / name) for name in DEFINITIONS]
    assert all(i.arches == ["x86_64", "i686"] for i in images)
    serial = new_serial()
    # A failed check ends a pipeline at once (expired) instead of after days of waiting.
    handles = [
        await start_pipeline(temporal, PipelineInput(spec=i, serial=serial, expire_after_s=1))
        for i in images
    ]
    results: list[PipelineResult] = await asyncio.gather(*(h.result() for h in handles))

    for image, handle in zip(images, handles, strict=True):
        times = await activity_seconds(handle)
        print(image.name, {k: round(v) for k, v in sorted(times.items()) if v >= 1})
    failed = {
        r.image: [
            f"{a.arch} {a.check}: {a.evidence}"
            for a in catalog.version(r.image, serial).assessments
            if a.state not in SATISFIED
        ]
        for r in results
        if r.state != "active"
    }
    assert not failed, failed
    for image, handle in zip(images, handles, strict=True):
        await assert_no_failed_attempts(handle)
        version = catalog.version(image.name, serial)
        recorded = {(a.arch, a.check, a.state) for a in version.assessments}
        # The bridge has no IPv6, and only the cloud variants have cloud-init.
        na = {"ipv6"} | ({"cloud-init"} if image.variant != "cloud" else set())
        assert recorded == {
            (arch, check, "not_applicable" if check in na else "passed")
            for arch in image.arches
            for check in image.required_checks
        }
        evidence = {(a.arch, a.check): a.evidence for a in version.assessments}
        for arch in image.arches:
            # Running, not degraded: no unit failed (the builder masks those that would).
            assert evidence[arch, "init"].startswith("systemd: running after"), image.name
            assert evidence[arch, "journal"].startswith("no failed units"), image.name
        manifests = {
            m.arch: {p.name for p in m.packages or []}
            for m in catalog.manifest(image.name, serial).arches
        }
        dhcp = "dhcpcd-base" if image.release == "sid" else "isc-dhcp-client"
        assert all(dhcp in packages for packages in manifests.values()), image.name
        if image.variant == "cloud":
            assert all("cloud-init" in packages for packages in manifests.values())
