"""The Incus flavour as the real `incus` client and daemon see it (deploy/setup-host runs
Incus beside LXD, on a bridge of its own): `incus remote add` of a private Incus feed,
`incus image list` shows the image, its alias and requirements, `incus launch` by alias runs
it (its feed lists the SBOMs too, items Incus passes over) and it gets an address on Incus's
bridge; the same from the public channel tree nginx serves. An LXD feed lists nothing Incus
can use (Incus takes only `incus.tar.xz` metadata).

Everything it creates goes, on failure too: the instance, the images the launches cached
in Incus, and the remotes (they live in a throwaway INCUS_CONF).
"""

import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.catalog import CatalogClient
from core.sbom import SbomFormat
from harness.deltas import refresh, two_busyboxes
from harness.front import Front, credential, wait_written
from harness.lxd import Lxc
from harness.publish import new_image, publish
from harness.servers import RunningServer, http
from harness.waiting import wait_until
from tests.support import run_icefloe

pytestmark = [pytest.mark.lxd, pytest.mark.incus, pytest.mark.debs]


class Incus(Lxc):
    """The `incus` CLI: `lxc`'s commands, its config directory in INCUS_CONF."""

    program = "incus"
    cache = Path("/var/cache/incus")

    def __init__(self, conf: Path) -> None:
        super().__init__(conf)
        self.env = os.environ | {"INCUS_CONF": str(conf)}
        self.sources: set[str] = set()  # its remotes' URLs, as Incus records an image's source

    def add_remote(self, name: str, url: str, cert: Path) -> None:
        super().add_remote(name, url, cert)
        self.sources.add(url.rstrip("/"))

    def forget(self) -> None:
        """Deletes the images Incus took from this client's remotes (only those: other tests
        share the daemon), its cached copies of their feeds, and the remotes."""
        for image in json.loads(self("image", "list", "local:", "--format", "json")):
            if (image.get("update_source") or {}).get("server") in self.sources:
                self.quietly("image", "delete", image["fingerprint"])
        for url in self.sources:
            shutil.rmtree(self.cache / hashlib.sha256(url.encode()).hexdigest(), ignore_errors=True)
        shutil.rmtree(self.conf, ignore_errors=True)

    def launch_runs(self, image: str, fingerprint: str) -> None:
        """`incus launch image`: the instance is Running on `fingerprint`, execs and gets an
        address by DHCP on its bridge (Incus's own, beside LXD's); it goes."""
        name = f"icefloe-incus-{uuid.uuid4().hex[:8]}"
        try:
            self("launch", image, name, timeout=300)
            assert self("list", name, "--format", "csv", "--columns", "s").strip() == "RUNNING"
            assert self("config", "get", name, "volatile.base_image").strip() == fingerprint
            assert self("exec", name, "--", "echo", "incus-ok").strip() == "incus-ok"
            bridge = json.loads(self("query", f"/1.0/instances/{name}"))["expanded_devices"]
            cidr = self("network", "get", bridge["eth0"]["network"], "ipv4.address").strip()
            assert self.address(name) in ipaddress.ip_interface(cidr).network
        finally:
            self.quietly("delete", "--force", name)

    def address(self, name: str, timeout_s: float = 60) -> ipaddress.IPv4Address:
        """The instance's IPv4 address on eth0, once its DHCP client got one."""

        def address() -> ipaddress.IPv4Address | None:
            state = json.loads(self("query", f"/1.0/instances/{name}/state"))
            for a in (state["network"] or {}).get("eth0", {}).get("addresses", []):
                if a["family"] == "inet" and a["scope"] == "global":
                    return ipaddress.IPv4Address(a["address"])
            return None

        return wait_until(address, f"{name} got an IPv4 address on eth0", timeout_s, 0.5)


@pytest.fixture
def incus(tmp_path: Path) -> Iterator[Incus]:
    """The `incus` client with a config of its own; what Incus took from its remotes goes."""
    if shutil.which("incus") is None:
        pytest.skip("no incus client: deploy/setup-host installs Incus (Debian 12 from backports)")
    cli = Incus(tmp_path / "incus-conf")
    try:
        yield cli
    finally:
        cli.forget()


def test_incus_lists_and_launches_from_a_private_incus_feed(
    image_server: RunningServer, incus: Incus, tmp_path: Path
):
    alias = f"icefloe-incus-{uuid.uuid4().hex[:8]}"
    image = new_image(arches=["x86_64"], aliases=[alias], requirements={"secureboot": "false"})
    published = publish(image_server, image, build_in=tmp_path, to=("testing", "active"))
    fingerprint = published.fingerprint
    cert = image_server.server_settings.cert_path
    for remote, flavour in (("inc", "incus"), ("lxd", "lxd")):
        path, _ = credential(image_server, "active", flavour)
        incus.add_remote(remote, image_server.url + path, cert)
        if flavour == "incus":  # the feed Incus launches from lists the SBOMs: it passes over them
            with http(image_server) as anonymous:
                feed = anonymous.get(f"{path}/streams/v1/images.json").json()
            product = feed["products"][f"{image.os}:{image.release}:amd64:default"]
            items = product["versions"][published.serial]["items"]
            listed = {key: item["ftype"] for key, item in items.items()}
            assert all(listed[fmt.ftype] == fmt.ftype for fmt in SbomFormat)

    assert alias in incus.images("inc")[fingerprint]
    listed = json.loads(incus("image", "list", "inc:", "--format", "json"))
    properties = next(i["properties"] for i in listed if i["fingerprint"] == fingerprint)
    assert properties["requirements.secureboot"] == "false"
    assert fingerprint not in incus.images("lxd"), "an LXD feed has no incus.tar.xz for Incus"
    incus.launch_runs(f"inc:{alias}", fingerprint)


@pytest.mark.nginx
def test_incus_launches_from_the_nginx_served_public_channel_and_lists_a_private_feed(
    fronted: tuple[RunningServer, Front], incus: Incus, tmp_path: Path
):
    server, front = fronted
    image = new_image(arches=["x86_64"])
    fingerprint = publish(server, image, build_in=tmp_path, to=("testing", "active")).fingerprint
    wait_written(server)
    private, _ = credential(server, "active", "incus")
    incus.add_remote("pub", f"{front.url}/channels/active/", front.cert)
    incus.add_remote("prv", f"{front.url}{private}/", front.cert)

    default_alias = f"{image.os}/one/default"  # the definition gives none
    assert default_alias in incus.images("pub")[fingerprint]
    assert default_alias in incus.images("prv")[fingerprint]
    incus.launch_runs(f"pub:{default_alias}", fingerprint)


def test_incus_refreshes_a_cached_image_by_the_delta(
    image_server: RunningServer, catalog: CatalogClient, incus: Incus, tmp_path: Path
):
    """Incus reads the `squashfs.vcdiff` item with `delta_base` as LXD does."""
    done = refresh(image_server, catalog, incus, tmp_path, two_busyboxes())
    assert done.refreshed == done.new != done.old
    assert done.delta_size is not None
    assert done.sent.get("squashfs.vcdiff") == done.delta_size
    assert "squashfs" not in done.sent, f"the whole squashfs was sent too: {done.sent}"


def test_icefloe_verify_on_an_image_incus_copied_from_a_private_feed(
    image_server: RunningServer, incus: Incus, tmp_path: Path
):
    """`icefloe pin --incus` and `icefloe verify --incus` read Incus's own remotes and store:
    the image copied from a private Incus feed verifies by fingerprint and by the alias."""
    alias = f"icefloe-incus-{uuid.uuid4().hex[:8]}"
    image = new_image(arches=["x86_64"], aliases=[alias])
    fingerprint = publish(
        image_server, image, build_in=tmp_path, to=("testing", "active")
    ).fingerprint
    path, _ = credential(image_server, "active", "incus")
    incus.add_remote("inc", image_server.url + path, image_server.server_settings.cert_path)
    env = incus.env | {"ICEFLOE_PINNED_KEYS": str(tmp_path / "pins.json")}

    def icefloe(*args: str) -> subprocess.CompletedProcess[str]:
        return run_icefloe(*args, env=env, timeout_s=120)

    assert icefloe("pin", "--incus", "--remote", "inc").returncode == 0
    incus("image", "copy", f"inc:{alias}", "local:")
    for ref in (fingerprint, f"inc:{alias}"):
        done = icefloe("verify", "--incus", ref)
        assert done.returncode == 0 and "VERIFIED" in done.stdout, (done.stdout, done.stderr)
    # `lxc` has neither the remote nor the image: the command asks the client it is told to.
    assert icefloe("verify", f"inc:{alias}").returncode == 2
