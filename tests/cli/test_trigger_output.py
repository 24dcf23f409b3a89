"""What `icefloe trigger --wait` and `icefloe status` tell a user about a pipeline that did
not end active: the evidence of every failed check, and that retention (not a check) made
a version inactive. The real CLI against the session's Temporal, workers and image server."""

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest
from temporalio.client import Client

from clients.catalog import CatalogClient
from core.config import REPO_DIR
from core.images import load_image
from harness.publish import move, pass_all, publish
from harness.servers import RunningServer

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]


async def icefloe(temporal: Client, server: RunningServer, *args: str) -> tuple[int, str, str]:
    """Run the CLI without blocking the event loop the in-process workers poll from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICEFLOE_")} | {
        "ICEFLOE_TEMPORAL_ADDRESS": temporal.service_client.config.target_host,
        "ICEFLOE_TEMPORAL_NAMESPACE": temporal.namespace,
        "ICEFLOE_SERVER_URL": server.url,
        "ICEFLOE_SERVER_CA": str(server.server_settings.cert_path),
        "ICEFLOE_PUBLISHER_TOKEN": server.token,
        "ICEFLOE_STATE_DIR": str(server.server_settings.state_dir),
        "ICEFLOE_LOG_LEVEL": "ERROR",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *args,
        cwd=REPO_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def definition(tmp: Path, release: str, checks: str) -> Path:
    path = tmp / f"{release}.yaml"
    path.write_text(f"os: busybox\nrelease: {release}\narches: [x86_64, i686]\nchecks: {checks}\n")
    return path


async def test_trigger_wait_and_status_print_the_evidence_of_failed_checks(
    temporal: Client, workers: list[str], image_server: RunningServer, tmp_path: Path
) -> None:
    checks = '[boots, {name: sixty-four-bit, command: "uname -m", stdout_pattern: "^x86_64$"}]'
    path = definition(tmp_path, "cli-evidence", checks)
    serial = "20261126-cli1"
    code, out, err = await icefloe(
        temporal, image_server, "trigger", "--image", str(path), "--serial", serial, "--wait"
    )
    assert code == 1, err
    lines = out.splitlines()
    failed = next(i for i, line in enumerate(lines) if "sixty-four-bit failed" in line)
    assert re.fullmatch(r"  i686 on \S+: sixty-four-bit failed", lines[failed])
    assert lines[failed + 1 : failed + 3] == [
        "      stdout does not match /^x86_64$/",
        "      i686",
    ], out
    assert re.search(r"x86_64 on \S+: sixty-four-bit passed\n  [^ ]", out), "no evidence"

    image = "busybox:cli-evidence:default"
    code, out, err = await icefloe(temporal, image_server, "status", image, serial)
    assert code == 0, err
    assert "waiting-for-retry" in out
    assert re.search(
        r"\n  i686 on \S+: sixty-four-bit failed:\n"
        r"      stdout does not match /\^x86_64\$/\n      i686\n",
        out,
    ), out
    code, _, err = await icefloe(temporal, image_server, "cancel", image, serial)
    assert code == 0, err


async def test_trigger_wait_says_when_retention_made_a_passed_version_inactive(
    temporal: Client,
    workers: list[str],
    image_server: RunningServer,
    catalog: CatalogClient,
    tmp_path: Path,
) -> None:
    """Three newer versions are active (the server keeps 3): an older serial that passes
    every check is made inactive by retention as it is promoted."""
    path = definition(tmp_path, "cli-retention", "[boots]")
    spec = load_image(path).model_copy(update={"arches": ["x86_64"]})
    newer = ["20261126-ret3", "20261126-ret2", "20261126-ret1"]
    for serial in newer:
        publish(catalog, spec, serial, tmp=tmp_path)
        move(catalog, spec, serial, "testing")
        pass_all(catalog, spec, serial)
        move(catalog, spec, serial, "active")

    old = "20261125-ret0"
    code, out, err = await icefloe(
        temporal,
        image_server,
        "trigger",
        "--image",
        str(path),
        "--serial",
        old,
        "--arch",
        "x86_64",
        "--wait",
    )
    assert code == 1, err
    assert f"{spec.name} {old}: inactive (every check passed on every arch, but newer" in out
    assert "newer versions hold every active slot" in out
    assert f"  active now: {', '.join(newer)} (newer than {old})" in out
    assert "failed" not in out
