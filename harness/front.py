"""The image server with the project's nginx in front (deploy/nginx), and what the tests of
its static trees share."""

import json
import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.config import REPO_DIR
from deploy import nginx
from harness.processes import free_port
from harness.servers import RunningServer, client, token
from harness.waiting import wait_until
from server_api.static import StaticTrees
from server_api.tls import ensure_self_signed


def trees_of(server: RunningServer) -> StaticTrees:
    return server.services.static


def wait_written(server: RunningServer, timeout_s: float = 20) -> None:
    """Until the static trees show the catalog's newest change."""
    engine = server.services.engine

    def caught_up() -> bool:
        with engine.connect() as conn:
            newest = conn.exec_driver_sql("SELECT max(id) FROM event").scalar() or 0
        return trees_of(server).shown() >= newest

    wait_until(caught_up, "the static trees caught up", timeout_s)


def credential(server: RunningServer, channel: str, flavour: str = "lxd") -> tuple[str, int]:
    """A new private feed: its base path and its credential's id."""
    operator = client(server, token(server, "operator"))
    body = {"name": f"f-{uuid.uuid4().hex[:6]}", "channel": channel, "flavour": flavour}
    try:
        issued = operator._http.post("/api/v1/credentials", json=body).json()
    finally:
        operator.close()
    return issued["feed_path"], issued["id"]


def export(
    server: RunningServer, channel: str, dest: Path, code: int = 0
) -> subprocess.CompletedProcess:
    """`icefloe export --channel <channel> <dest>` on the server's host, exiting `code`."""
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "export", "--channel", channel, str(dest)],
        capture_output=True,
        text=True,
        cwd=REPO_DIR,
        env=os.environ | {"ICEFLOE_STATE_DIR": str(server.server_settings.state_dir)},
        timeout=120,
    )
    assert done.returncode == code, done.stderr
    return done


def listed(images_json: bytes) -> set[str]:
    """Every version serial the catalog lists."""
    products = json.loads(images_json)["products"].values()
    return {serial for p in products for serial in p["versions"]}


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
