"""An arch worker never runs more builds or test instances than its limits, however many
pipelines come at once, on the real dev server, image server and LXD: one x86_64 worker with
ICEFLOE_WORKER_MAX_BUILDS=1 and _MAX_TESTS=1, four busybox pipelines started together, and a
fifth cancelled while it waits for its slot. What ran at once is measured from outside the
pool too: build directories on disk and the LXD instances of these pipelines, sampled."""

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from clients.catalog import CatalogClient
from clients.lxd import connect_lxd
from core.pipeline import Phase, PipelineInput, PipelineResult
from harness.occupancy import Occupancy
from harness.publish import busybox_spec, next_serial
from harness.remote import namespace
from harness.servers import RunningServer
from harness.waiting import until
from tests.support import assert_no_failed_attempts
from workers.arch import arch_worker
from workers.control import control_worker
from workflows.pipeline import ImagePipeline
from workflows.trigger import start_pipeline

pytestmark = [pytest.mark.lxd, pytest.mark.temporal, pytest.mark.debs]

WAITING = Phase.waiting_for_slot.on(["x86_64"])


async def watch(
    handles: list[WorkflowHandle[ImagePipeline, PipelineResult]], seen: dict[str, set[str]]
) -> None:
    """Every progress (phase, details) each pipeline showed, until all are done."""
    while True:
        running = 0
        for h in handles:
            try:
                p = await h.query(ImagePipeline.progress)
            except RPCError:  # a cancelled one may answer no more
                continue
            seen.setdefault(h.id, set()).add(f"{p.phase}|{p.details}")
            running += p.phase not in (Phase.done, Phase.cancelled)
        if not running:
            return
        await asyncio.sleep(0.1)


def phase_of(seen: set[str]) -> Callable[[str], bool]:
    return lambda phase: any(s.split("|")[0] == phase for s in seen)


async def test_one_build_and_one_test_instance_at_a_time(temporal: Client, tmp_path: Path) -> None:
    client = await namespace(temporal, f"icefloe-slots-{uuid.uuid4().hex[:8]}")
    tag = uuid.uuid4().hex[:6]
    images = [busybox_spec(f"s{tag}{i}", checks=["boots", "ipv4"]) for i in range(5)]
    serials = [next_serial() for _ in images]
    with RunningServer(tmp_path / "server") as server:
        settings = server.client_settings(worker_max_builds=1, worker_max_tests=1)
        catalog = CatalogClient(settings)
        with ThreadPoolExecutor(max_workers=4) as executor:
            worker = arch_worker(
                client, "x86_64", catalog, lambda: connect_lxd(settings), settings, executor
            )
            slots = worker.slots.pools
            async with control_worker(client, catalog, executor), worker:
                with Occupancy(settings, set(serials)).sampling() as most:
                    handles = [
                        await start_pipeline(client, PipelineInput(spec=image, serial=serial))
                        for image, serial in zip(images[:4], serials[:4], strict=True)
                    ]
                    # a fifth, cancelled while it waits its turn
                    victim = await start_pipeline(
                        client, PipelineInput(spec=images[4], serial=serials[4])
                    )
                    seen: dict[str, set[str]] = {}
                    watching = asyncio.create_task(watch([*handles, victim], seen))
                    await until(
                        lambda: phase_of(seen.get(victim.id, set()))(WAITING),
                        "the fifth pipeline to wait for a slot",
                        120,
                        every_s=0.05,
                    )
                    await victim.cancel()
                    with pytest.raises(WorkflowFailureError):
                        await victim.result()
                    results = [await h.result() for h in handles]
                    await watching
                # no pipeline is left showing a wait
                for h in handles:
                    assert (await h.query(ImagePipeline.progress)).phase == Phase.done
            catalog.close()
    assert [r.state for r in results] == ["active"] * 4, [r.message for r in results]
    for h in handles:
        await assert_no_failed_attempts(h)
    # never more than one of each: the pool's own count and what the host showed
    assert most.most == {"build": 1, "test": 1}
    assert (slots["build"].most, slots["test"].most) == (1, 1)
    assert all((p.in_use, p.waiting) == (0, 0) for p in slots.values())
    # the waiting was visible, saying what for and how many were ahead
    details = [s.split("|", 1)[1] for h in handles for s in seen[h.id]]
    assert any(phase_of(seen[h.id])(WAITING) for h in handles)
    assert any("x86_64: build slot: " in d and " ahead" in d for d in details), details
    assert any("x86_64: test slot: " in d for d in details), details
