"""Webhook delivery latency with the receiver up: from a workflow's event being recorded
(`POST /api/v1/notices` answered) to the signed event arriving at a real HTTPS receiver,
through the outbox, the dispatcher, a delivery workflow and the control worker's activity.

Starts its own Temporal dev server, image server (in this process) and control worker in a
temporary directory; sends `--events` events one after another (each waits for the one
before to arrive, so it measures one delivery's path, not a queue), then a burst of them
at once. Prints median and p99; exits 1 if any event is missing or arrives twice.
    ICEFLOE_STATE_DIR=.state PYTHONPATH=. .venv/bin/python bench/hooks.py [--events 100]
"""

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from core.notices import HookCreate, NoticeCreate, NoticeKind
from harness.hookstack import HookStack, hook_stack
from harness.receiver import Receiver
from harness.temporal import start_dev_server
from harness.waiting import until


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))]


def line(what: str, ms: list[float]) -> str:
    return f"{what}: n={len(ms)} median {statistics.median(ms):.0f} ms, p99 {p99(ms):.0f} ms"


async def one_by_one(stack: HookStack, receiver: Receiver, n: int, run: str) -> list[float]:
    latencies = []
    for i in range(n):
        before = len(receiver.received)
        notice = NoticeCreate(kind=NoticeKind.machinery_failed, image="bench:x", key=f"{run}:{i}")
        await asyncio.to_thread(stack.publisher.record_notice, notice)
        recorded = time.time()
        arrived = lambda n=before: len(receiver.received) > n  # noqa: E731
        await until(arrived, f"event {i} delivered", 60, 0.005)
        latencies.append((receiver.received[before].at - recorded) * 1000)
    return latencies


async def burst(stack: HookStack, receiver: Receiver, n: int) -> list[float]:
    before = len(receiver.received)
    recorded: dict[str, float] = {}
    for i in range(n):
        notice = NoticeCreate(kind=NoticeKind.machinery_failed, image="bench:x", key=f"burst:{i}")
        view = await asyncio.to_thread(stack.publisher.record_notice, notice)
        recorded[view.event_id] = time.time()
    await until(lambda: len(receiver.received) >= before + n, "the burst delivered", 120, 0.01)
    arrived = {json.loads(r.body)["id"]: r.at for r in receiver.received[before:]}
    return [(arrived[e] - at) * 1000 for e, at in recorded.items()]


async def main(events: int) -> int:
    with tempfile.TemporaryDirectory(prefix="icefloe-bench-hooks-") as tmp:
        async with (
            await start_dev_server() as env,
            hook_stack(env.client, Path(tmp), True, True) as stack,
        ):
            with stack.receiver() as receiver:
                hook = await asyncio.to_thread(
                    stack.operator.add_hook, HookCreate(url=receiver.url)
                )
                await one_by_one(stack, receiver, 3, "warm")  # warm: connections, worker caches
                seq = await one_by_one(stack, receiver, events, "seq")
                many = await burst(stack, receiver, events)
                await asyncio.sleep(2)  # any duplicate would have arrived by now
                ids = [json.loads(r.body)["id"] for r in receiver.received]
                delivered = await asyncio.to_thread(stack.operator.deliveries, hook.id, 1000)
    print(line("one at a time, recorded -> received", seq))
    print(line(f"{events} at once, recorded -> received", many))
    attempts = sum(d.attempts for d in delivered)
    print(f"deliveries {len(delivered)}, attempts {attempts}, requests received {len(ids)}")
    return 0 if len(ids) == len(set(ids)) == 2 * events + 3 else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100)
    sys.exit(asyncio.run(main(ap.parse_args().events)))
