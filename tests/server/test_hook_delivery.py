"""Webhooks delivered for real: the image server's outbox, its dispatcher, the delivery
workflow on a real Temporal and control worker, and a real HTTPS receiver on loopback."""

import asyncio
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import Session, select
from temporalio.client import Client

from core.notices import SIGNATURE_HEADER, DeliveryState, HookCreate, NoticeCreate, NoticeKind
from harness.hookstack import HookStack, hook_stack
from harness.publish import new_image, publish
from harness.waiting import until
from server_api import notices
from server_api.models import Delivery

pytestmark = pytest.mark.temporal

WORKFLOW_EVENTS = (NoticeKind.machinery_failed, NoticeKind.worker_missing)


def valid(secret: str, body: bytes, signature: str) -> bool:
    want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, signature)


def report(stack: HookStack, kind: NoticeKind, key: str) -> None:
    """A workflow's event, as activities/hooks.py records it (twice: a retried activity)."""
    for _ in range(2):
        stack.publisher.record_notice(NoticeCreate(kind=kind, image="busybox:x", key=key))


def states(stack: HookStack, hook_id: int) -> list[DeliveryState]:
    return [d.state for d in stack.operator.deliveries(hook_id)]


async def settled(stack: HookStack, hook_id: int, want: list[DeliveryState], what: str) -> None:
    """Until the hook's deliveries are in the states `want` (newest first)."""
    await until(lambda: asyncio.to_thread(lambda: states(stack, hook_id) == want), what, 60)


async def test_a_receiver_down_while_events_happen_gets_each_once_signed(
    temporal: Client, tmp_path: Path
):
    async with hook_stack(
        temporal, tmp_path / "server", server_allows_local=True, worker_allows_local=True
    ) as stack:
        receiver = stack.receiver()  # not started: down, connections refused
        hook = stack.operator.add_hook(HookCreate(url=receiver.url))
        assert all(hook.secret not in h.model_dump_json() for h in stack.operator.hooks())

        image = new_image()
        version = publish(stack.publisher, image, tmp=tmp_path / "files", to=["testing"])
        for n, kind in enumerate(WORKFLOW_EVENTS):
            report(stack, kind, f"test:{version.serial}:{n}")
        expected = 1 + len(WORKFLOW_EVENTS)  # version.testing and the two reported

        def failing() -> bool:
            found = stack.operator.deliveries(hook.id)
            return len(found) == expected and all(
                d.state == DeliveryState.failing and d.attempts >= 2 for d in found
            )

        await until(lambda: asyncio.to_thread(failing), "every delivery failing, retried", 60)
        assert all("ConnectError" in d.last_error for d in stack.operator.deliveries(hook.id))

        with receiver:
            await settled(
                stack,
                hook.id,
                [DeliveryState.delivered] * expected,
                "every delivery delivered once the receiver is up",
            )
        events = [json.loads(r.body) for r in receiver.received]
        assert all(
            valid(hook.secret, r.body, r.headers[SIGNATURE_HEADER]) for r in receiver.received
        )
        by_id = {e["id"]: e for e in events}  # what a receiver de-duplicates by
        assert len(by_id) == expected
        assert sorted(e["type"] for e in by_id.values()) == sorted(
            f"org.icefloe.{k}" for k in (NoticeKind.version_testing, *WORKFLOW_EVENTS)
        )
        testing = next(e for e in events if e["type"] == "org.icefloe.version.testing")
        assert testing["specversion"] == "1.0"
        assert testing["subject"] == f"{image.name}/{version.serial}"


async def test_redirects_and_loopback_targets_are_refused_by_default(
    temporal: Client, tmp_path: Path
):
    async with hook_stack(
        temporal, tmp_path / "server", server_allows_local=True, worker_allows_local=False
    ) as stack:
        with stack.receiver() as target:
            # The worker refuses the loopback receiver the server let through: given up at once.
            hook = stack.operator.add_hook(HookCreate(url=target.url))
            report(stack, NoticeKind.machinery_failed, "test:loopback")
            await settled(
                stack, hook.id, [DeliveryState.failed], "the delivery to loopback given up"
            )
            (refused,) = stack.operator.deliveries(hook.id)
            assert "loopback" in refused.last_error and refused.attempts == 1
            assert target.received == []
            stack.operator.remove_hook(hook.id)
    async with hook_stack(
        temporal, tmp_path / "redirect", server_allows_local=True, worker_allows_local=True
    ) as stack:
        with stack.receiver() as target, stack.receiver(redirect_to=target.url) as redirecting:
            hook = stack.operator.add_hook(HookCreate(url=redirecting.url))
            report(stack, NoticeKind.machinery_failed, "test:redirect")

            def redirected() -> bool:
                found = stack.operator.deliveries(hook.id)
                return any(d.attempts >= 2 and "redirect" in d.last_error for d in found)

            await until(lambda: asyncio.to_thread(redirected), "the redirect refused, retried", 60)
            assert target.received == [] and redirecting.received == []
            (d,) = stack.operator.deliveries(hook.id)
            assert d.state == DeliveryState.failing and d.last_status == 307
            # Removing the hook ends its deliveries at their next attempt.
            stack.operator.remove_hook(hook.id)
            await until(
                lambda: asyncio.to_thread(
                    lambda: _one_state(stack, hook.id) == DeliveryState.failed
                ),
                "the removed hook's delivery given up",
                60,
            )


def _one_state(stack: HookStack, hook_id: int) -> DeliveryState:
    """The state of a removed hook's only delivery, read from the catalog."""
    with Session(stack.server.services.engine) as session:
        return DeliveryState(
            session.exec(select(Delivery.state).where(Delivery.hook_id == hook_id)).one()
        )


async def test_a_delivery_a_dead_server_left_is_started_once_by_the_next(
    temporal: Client, tmp_path: Path
):
    async with hook_stack(
        temporal, tmp_path / "server", server_allows_local=True, worker_allows_local=True
    ) as stack:
        with stack.receiver() as receiver:
            hook = stack.operator.add_hook(HookCreate(url=receiver.url))
            stack.server.__exit__()  # the server is gone; its last transaction committed
            engine = stack.server.services.engine
            with Session(engine) as session:
                notices.record_notice(session, NoticeKind.refresh_finished, "", None, {}, "left")
                session.commit()
            stack.server.restart()
            await settled(
                stack,
                hook.id,
                [DeliveryState.delivered],
                "the left delivery delivered after the restart",
            )
            # Dispatched again (as if its mark was lost): the workflow id is the delivery's,
            # so the start attaches to the one that ran.
            with Session(engine) as session:
                session.execute(update(Delivery).values(dispatched_at=None, state="pending"))
                session.commit()
            await until(lambda: asyncio.to_thread(_dispatched, stack), "dispatched again", 60)
            (delivery,) = await asyncio.to_thread(stack.operator.deliveries, hook.id)
            started = f"WorkflowId STARTS_WITH 'icefloe-delivery:{delivery.event_id}:'"
            runs = stack.temporal.list_workflows(started)
            assert len([r async for r in runs]) == 1
            assert len(receiver.received) == 1


def _dispatched(stack: HookStack) -> bool:
    with Session(stack.server.services.engine) as session:
        return session.exec(select(Delivery.dispatched_at)).one() is not None
