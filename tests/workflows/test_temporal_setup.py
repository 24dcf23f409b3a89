"""A fresh Temporal namespace (no search attributes, as any cluster starts): starting a
pipeline is refused in one line naming the fix, `icefloe setup-temporal` registers the
attributes and the pruning schedule, idempotently, and then pipelines start."""

import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from clients.temporal import TemporalNotSetUp, missing_search_attributes, register
from core import search_attributes as sa
from core.config import REPO_DIR
from core.pipeline import PipelineInput
from deploy.stack import temporal_binary
from harness.processes import stop
from harness.publish import busybox_spec
from workflows.trigger import start_pipeline

pytestmark = pytest.mark.temporal


@pytest_asyncio.fixture(loop_scope="session")
async def bare() -> AsyncIterator[Client]:
    """A dev server started without Icefloe's search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    async with env:
        yield env.client


def icefloe(client: Client, *args: str) -> subprocess.CompletedProcess:
    address = client.service_client.config.target_host
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_DIR,
        env=os.environ | {"ICEFLOE_TEMPORAL_ADDRESS": address, "ICEFLOE_LOG_LEVEL": "WARNING"},
    )


async def test_a_fresh_namespace_is_refused_then_set_up_once(bare: Client) -> None:
    inp = PipelineInput(spec=busybox_spec("setup"), serial="20261126-setup")
    with pytest.raises(TemporalNotSetUp, match="run `icefloe setup-temporal` once"):
        await start_pipeline(bare, inp)

    trigger = icefloe(bare, "trigger", "--serial", "20261126-cli")
    assert trigger.returncode == 2 and "Traceback" not in trigger.stderr
    assert "icefloe setup-temporal" in trigger.stderr.strip().splitlines()[-1]

    first = icefloe(bare, "setup-temporal")
    assert first.returncode == 0, first.stderr
    assert "search attributes: added IcefloeImage" in first.stdout
    assert "schedule icefloe-prune-testing created" in first.stdout
    again = icefloe(bare, "setup-temporal")
    assert again.returncode == 0, again.stderr
    assert "search attributes: all present" in again.stdout and "updated" in again.stdout
    assert await missing_search_attributes(bare) == []
    assert await register(bare) == []

    handle = await start_pipeline(bare, inp)  # no worker: it only has to be accepted
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(sa.IMAGE) == inp.spec.name
    await handle.terminate("test done")


async def test_the_control_worker_registers_them_at_start(bare: Client) -> None:
    address = bare.service_client.config.target_host
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker", "control"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO_DIR,
        env=os.environ | {"ICEFLOE_TEMPORAL_ADDRESS": address, "ICEFLOE_LOG_LEVEL": "WARNING"},
    )
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline()  # printed once it polls, after registering
        assert "polling icefloe-control" in line, line
        assert await missing_search_attributes(bare) == []
    finally:
        stop(worker)
