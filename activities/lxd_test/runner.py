"""Launch an instance from a channel feed by fingerprint, run checks in it, delete it.

Plain functions over a pylxd client: no Temporal here, so they test on their own.
pylxd blocks, so these run in the activity thread pool.
"""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import pylxd
from pylxd.exceptions import LXDAPIException, NotFound
from pylxd.models import Instance

Beat = Callable[[str], None]
POLL_INTERVAL = 0.1
OPERATION_WAIT_S = 5


class TestSetupError(RuntimeError):
    """The instance could not be created or started: no check could run."""


@dataclass(frozen=True)
class LaunchSpec:
    name: str
    server_url: str  # the channel feed's base URL
    fingerprint: str
    certificate: str | None  # PEM pinned for the image server, None for system CAs
    labels: dict[str, str]


def instance_name(image: str, serial: str, arch: str) -> str:
    """Deterministic per (version, arch): a retried attempt finds and replaces its leftover."""
    digest = hashlib.sha256(f"{image}/{serial}/{arch}".encode()).hexdigest()[:12]
    return f"icefloe-{arch.replace('_', '')}-{digest}"


def _wait_operation(client: pylxd.Client, operation: str, deadline: float, beat: Beat) -> None:
    op_id = operation.rsplit("/", 1)[-1]
    while True:
        body = client.api.operations[op_id].wait.get(params={"timeout": OPERATION_WAIT_S}).json()
        meta = body.get("metadata") or {}
        if meta.get("status") == "Success":
            return
        if meta.get("status") in ("Failure", "Cancelled"):
            raise TestSetupError(meta.get("err") or "LXD operation failed")
        if time.monotonic() > deadline:
            raise TestSetupError(f"LXD operation {op_id} did not finish in time")
        progress = (meta.get("metadata") or {}).get("download_progress", "")
        beat(f"creating instance {progress}".strip())


def remove(client: pylxd.Client, name: str) -> bool:
    """Stop and delete an instance if it exists. True if there was one."""
    try:
        inst = client.instances.get(name)
    except NotFound:
        return False
    if inst.status != "Stopped":
        inst.stop(force=True, wait=True)
    inst.delete(wait=True)
    return True


def launch(client: pylxd.Client, spec: LaunchSpec, timeout_s: float, beat: Beat) -> Instance:
    """Create (pulling the image by fingerprint) and start the instance."""
    if remove(client, spec.name):
        beat(f"removed leftover instance {spec.name}")
    source = {
        "type": "image",
        "mode": "pull",
        "server": spec.server_url,
        "protocol": "simplestreams",
        "fingerprint": spec.fingerprint,
    }
    if spec.certificate:
        source["certificate"] = spec.certificate
    config = {f"user.icefloe.{k}": v for k, v in spec.labels.items()}
    deadline = time.monotonic() + timeout_s
    try:
        response = client.api.instances.post(
            json={"name": spec.name, "source": source, "config": config}
        )
        _wait_operation(client, response.json()["operation"], deadline, beat)
        inst = client.instances.get(spec.name)
        inst.start(wait=True)
    except LXDAPIException as exc:
        raise TestSetupError(f"LXD refused to launch {spec.fingerprint[:12]}: {exc}") from None
    base = inst.config.get("volatile.base_image")
    if base != spec.fingerprint:
        raise TestSetupError(f"instance runs image {base}, not {spec.fingerprint}")
    return inst


def run(inst: Instance, command: list[str], timeout_s: int) -> tuple[int, str]:
    """Run a command with a hard timeout (pylxd has none); returns exit code and output."""
    result = inst.execute(["timeout", str(timeout_s), *command])
    return result.exit_code, (result.stdout + result.stderr).strip()


def wait_until(probe: Callable[[], tuple[bool, str]], timeout_s: float) -> tuple[bool, str]:
    """Poll a probe until it holds or the deadline passes; returns the last evidence."""
    deadline = time.monotonic() + timeout_s
    while True:
        ok, evidence = probe()
        if ok or time.monotonic() > deadline:
            return ok, evidence
        time.sleep(POLL_INTERVAL)
