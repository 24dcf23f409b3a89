"""Test instances in LXD: launch one from a channel feed by fingerprint, describe its
network for the checks, stop and delete it, forget its cached image.

Plain functions over a pylxd client: no Temporal here, so they test on their own.
"""

import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pylxd
from pylxd.exceptions import LXDAPIException, NotFound
from pylxd.models import Instance

from activities.lxd_test.execs import POLL_INTERVAL
from core.spec import Privilege

Beat = Callable[[str], None]
OPERATION_WAIT_S = 5
LABEL = "user.icefloe."
# A project of our own keeps test instances and their cached images apart from the
# host's; it shares the default profile (eth0 on the bridge, root on the pool).
PROJECT_CONFIG = {
    "features.images": "true",
    "features.profiles": "false",
    "features.storage.volumes": "false",
    "features.networks": "false",
}


class TestSetupError(RuntimeError):
    """The instance could not be created or started: no check could run."""


@dataclass(frozen=True)
class LaunchSpec:
    name: str
    server_url: str  # the channel feed's base URL
    fingerprint: str
    certificate: str | None  # PEM pinned for the image server, None for system CAs
    labels: dict[str, str]
    privilege: Privilege = Privilege.unprivileged
    cloud_init_user_data: str | None = None  # LXD's `cloud-init.user-data` for the instance


@dataclass(frozen=True)
class Target:
    """A started instance and what the checks need to know about its network."""

    inst: Instance
    interface: str
    network: str | None  # the LXD network eth0 is on
    bridge_ipv4: str | None  # the host's address on that network
    bridge_ipv6: str | None  # None: the network offers no IPv6
    beat: Beat = field(default=lambda _: None)
    dns_domain: str | None = None  # the DNS domain of that network's resolver, if LXD runs it


def ensure_project(client: pylxd.Client, name: str) -> bool:
    """Create the test project if it is missing. True if it was created."""
    if name == "default" or client.projects.exists(name):
        return False
    client.projects.create(name, description="Icefloe test instances", config=PROJECT_CONFIG)
    return True


def instance_name(image: str, serial: str, arch: str, privilege: Privilege) -> str:
    """Deterministic per (version, arch, privilege): a retried attempt replaces its own leftover."""
    digest = hashlib.sha256(f"{image}/{serial}/{arch}/{privilege}".encode()).hexdigest()[:12]
    return f"icefloe-{arch.replace('_', '')}-{digest}"


def launch_spec(
    image: str,
    serial: str,
    arch: str,
    privilege: Privilege,
    *,
    server_url: str,
    fingerprint: str,
    certificate: str | None,
    workflow: str,
    temporal: str,
    cloud_init_user_data: str | None = None,
) -> LaunchSpec:
    """The instance of one (version, arch, privilege), labelled so the janitor can judge it:
    `temporal` names the namespace and server whose workflow owns it."""
    return LaunchSpec(
        name=instance_name(image, serial, arch, privilege),
        server_url=server_url,
        fingerprint=fingerprint,
        certificate=certificate,
        labels={
            "image": image,
            "serial": serial,
            "arch": arch,
            "workflow": workflow,
            "temporal": temporal,
        },
        privilege=privilege,
        cloud_init_user_data=cloud_init_user_data,
    )


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


def remove(client: pylxd.Client, name: str, timeout_s: float = 60) -> bool:
    """Stop and delete an instance if it exists. True if there was one.

    Tries again while LXD says the instance is busy (a concurrent stop from `halt`).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            inst = client.instances.get(name)
        except NotFound:
            return False
        try:
            if inst.status != "Stopped":
                inst.stop(force=True, wait=True)
            inst.delete(wait=True)
            return True
        except NotFound:
            return True
        except LXDAPIException:
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL_INTERVAL)


def listed(client: pylxd.Client) -> list[Instance]:
    """Every instance in the project with its config, read in one request: listing names and
    then reading each instance races with another worker deleting its own (`Instance not
    found`)."""
    return client.instances.all(recursion=1)


def halt(client: pylxd.Client, names: list[str]) -> None:
    """Force-stop instances, so an exec blocked on them returns (used on cancellation)."""
    for name in names:
        with contextlib.suppress(LXDAPIException):  # gone or stopped: nothing blocks on it
            client.instances.get(name).stop(force=True, wait=True)


def forget_image(client: pylxd.Client, fingerprint: str) -> bool:
    """Delete the cached copy of a tested image, unless an instance still uses it."""
    if any(i.config.get("volatile.base_image") == fingerprint for i in listed(client)):
        return False
    try:
        client.images.get(fingerprint).delete(wait=True)
    except NotFound:
        return False
    except LXDAPIException:
        if client.images.exists(fingerprint):
            raise
        return False  # another worker's janitor deleted it first
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
    config = {f"{LABEL}{k}": v for k, v in spec.labels.items()}
    if spec.privilege == Privilege.privileged:
        config["security.privileged"] = "true"
    if spec.cloud_init_user_data is not None:
        config["cloud-init.user-data"] = spec.cloud_init_user_data
    deadline = time.monotonic() + timeout_s
    try:
        response = client.api.instances.post(
            json={"name": spec.name, "source": source, "config": config}
        )
        _wait_operation(client, response.json()["operation"], deadline, beat)
        beat(f"starting {spec.name}")
        inst = client.instances.get(spec.name)
        inst.start(wait=True)
    except LXDAPIException as exc:
        raise TestSetupError(f"LXD refused to launch {spec.fingerprint[:12]}: {exc}") from None
    base = inst.config.get("volatile.base_image")
    if base != spec.fingerprint:
        raise TestSetupError(f"instance runs image {base}, not {spec.fingerprint}")
    return inst


def target(client: pylxd.Client, inst: Instance, beat: Beat, interface: str = "eth0") -> Target:
    """The instance plus the host side of its primary interface's network, read from LXD."""
    nic = inst.expanded_devices.get(interface, {})
    name = nic.get("network") or nic.get("parent")
    v4 = v6 = domain = None
    if name:
        try:
            network = client.networks.get(name)
        except NotFound:
            network = None
        config = network.config if network else {}
        v4 = (config.get("ipv4.address") or "").split("/")[0] or None
        v6 = (config.get("ipv6.address") or "").split("/")[0] or None
        if network is not None and network.managed and network.type == "bridge":
            domain = config.get("dns.domain") or "lxd"  # LXD's dnsmasq and its default
    none = ("none", None)
    return Target(
        inst,
        interface,
        name,
        None if v4 in none else v4,
        None if v6 in none else v6,
        beat,
        domain,
    )
