"""The image server with the project's nginx in front (deploy/nginx), and what the tests of
its static trees share."""

import json
import ssl
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from activities.builders.base import BuildJob, HostDirs
from activities.builders.busybox import build_busybox
from core.spec import ImageSpec
from deploy import nginx
from server_api.static import StaticTrees
from server_api.tls import ensure_self_signed
from tests.support import (
    DEBS,
    RunningServer,
    client,
    free_port,
    move,
    next_serial,
    pass_all,
    publish_built,
    publish_fake,
    token,
)


def trees_of(server: RunningServer) -> StaticTrees:
    return server.services.static


def wait_written(server: RunningServer, timeout_s: float = 20) -> None:
    """Until the static trees show the catalog's newest change."""
    engine = server.services.engine
    deadline = time.monotonic() + timeout_s
    while True:
        with engine.connect() as conn:
            newest = conn.exec_driver_sql("SELECT max(id) FROM event").scalar() or 0
        if trees_of(server).shown() >= newest:
            return
        assert time.monotonic() < deadline, "the static trees did not catch up"
        time.sleep(0.05)


def credential(server: RunningServer, channel: str, flavour: str = "lxd") -> tuple[str, int]:
    """A new private feed: its base path and its credential's id."""
    operator = client(server, token(server, "operator"))
    body = {"name": f"f-{uuid.uuid4().hex[:6]}", "channel": channel, "flavour": flavour}
    try:
        issued = operator._http.post("/api/v1/credentials", json=body).json()
    finally:
        operator.close()
    return issued["feed_path"], issued["id"]


def listed(images_json: bytes) -> set[str]:
    """Every version serial the catalog lists."""
    products = json.loads(images_json)["products"].values()
    return {serial for p in products for serial in p["versions"]}


def published(server: RunningServer, tmp: Path, image: ImageSpec, *states: str) -> str:
    serial = next_serial()
    catalog = client(server, server.token)
    try:
        publish_fake(catalog, tmp, image, serial)
        move(catalog, image, serial, *states)
    finally:
        catalog.close()
    return serial


@dataclass
class Front:
    """nginx in front of a server, as deploy/nginx configures it."""

    url: str
    cert: Path

    def trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert)


@contextmanager
def nginx_front(server: RunningServer, work: Path) -> Iterator[Front]:
    work.mkdir(parents=True, exist_ok=True)
    cert, key = work / "front.crt", work / "front.key"
    ensure_self_signed(cert, key, "127.0.0.1")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    site = nginx.site(server.server_settings, f"127.0.0.1:{port}", cert, key)
    with nginx.serving(site, work, url):
        yield Front(url, cert)


def built(server: RunningServer, image: ImageSpec, tmp: Path) -> tuple[str, str]:
    """A busybox version of `image` built, published and in testing: (serial, fingerprint)."""
    serial = next_serial()
    out = tmp / "built" / serial
    files = build_busybox(BuildJob(image, "x86_64", serial, out), HostDirs(DEBS, tmp / "cache"))
    catalog = client(server, server.token)
    try:
        return serial, publish_built(catalog, image, serial, "x86_64", files)
    finally:
        catalog.close()


def promoted(server: RunningServer, image: ImageSpec, tmp: Path) -> str:
    """A busybox version of `image` built, published and moved to active: its fingerprint."""
    serial, fingerprint = built(server, image, tmp)
    catalog = client(server, server.token)
    try:
        pass_all(catalog, image, serial)
        move(catalog, image, serial, "active")
    finally:
        catalog.close()
    return fingerprint
