"""An image server whose hooks are delivered by a control worker in a Temporal namespace of
their own (no other test's control worker takes their tasks), with retries seconds apart:
what the webhook tests and bench/hooks.py run."""

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from clients.catalog import CatalogClient
from clients.hooks import HooksClient
from harness.processes import environ
from harness.receiver import Receiver
from harness.remote import namespace
from harness.servers import RunningServer, token
from workers.control import control_worker

HOOKS_NAMESPACE = "icefloe-hooks"
QUICK_RETRIES = {
    "ICEFLOE_HOOKS_RETRY_INITIAL_S": "0.5",
    "ICEFLOE_HOOKS_RETRY_MAX_S": "1",
    "ICEFLOE_HOOKS_DISPATCH_POLL_S": "0.5",
    "ICEFLOE_HOOKS_TIMEOUT_S": "5",
}


@dataclass(frozen=True)
class HookStack:
    server: RunningServer
    temporal: Client  # the hooks' own namespace
    operator: HooksClient
    publisher: CatalogClient

    def receiver(self, redirect_to: str | None = None) -> Receiver:
        """A receiver with the server's certificate, which the worker trusts (ICEFLOE_HOOKS_CA)."""
        s = self.server.server_settings
        return Receiver(s.cert_path, s.key_path, redirect_to)


@asynccontextmanager
async def hook_stack(
    temporal: Client, state_dir: Path, server_allows_local: bool, worker_allows_local: bool
) -> AsyncIterator[HookStack]:
    """Whether loopback receivers are allowed is set apart for the server (making hooks) and
    the worker (sending), so a test can see the worker refuse what the server let through."""
    own = await namespace(temporal, HOOKS_NAMESPACE)
    target = temporal.service_client.config.target_host
    common = QUICK_RETRIES | {
        "ICEFLOE_TEMPORAL_ADDRESS": target,
        "ICEFLOE_TEMPORAL_NAMESPACE": HOOKS_NAMESPACE,
    }
    local = {"ICEFLOE_HOOKS_ALLOW_LOCAL_TARGETS": str(server_allows_local).lower()}
    with environ(common | local), RunningServer(state_dir) as server:
        ops = HooksClient(server.client_settings(), token=token(server, "operator", "ops-hooks"))
        settings = server.client_settings()
        worker_env = {
            "ICEFLOE_HOOKS_ALLOW_LOCAL_TARGETS": str(worker_allows_local).lower(),
            "ICEFLOE_HOOKS_CA": str(server.server_settings.cert_path),
        }
        with (
            closing(ops),
            closing(CatalogClient(settings)) as catalog,
            ThreadPoolExecutor(max_workers=8) as executor,
        ):
            with environ(worker_env):
                worker = control_worker(own, catalog, executor)
            async with worker:
                yield HookStack(server, own, ops, catalog)
