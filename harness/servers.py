"""The image server as the tests and benchmarks run it: in a thread of this process
(`RunningServer`) or as `icefloe server` in a process of its own (`server_process`), and the
clients that talk to it."""

import os
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import httpx
import uvicorn
from sqlmodel import Session

from clients.catalog import CatalogClient
from core.config import REPO_DIR, ServerSettings, Settings
from harness.processes import alive, free_port
from harness.waiting import wait_until
from server_api.main import create_app
from server_api.services import Services, services_of
from server_api.tls import ensure_self_signed
from server_api.tokens import create_token

DEBS = Settings().state_dir / "debs"


class RunningServer:
    """The image server in a thread of this process, like `icefloe server` runs it."""

    def __init__(self, state_dir: Path, **settings: Any) -> None:
        """`settings`: ServerSettings fields other than the state dir and port."""
        server = {"port": free_port(), **settings}
        self.server_settings = Settings(state_dir=state_dir, server=server).server
        s = self.server_settings
        ensure_self_signed(s.cert_path, s.key_path, s.host)
        self.app = create_app(s)
        with Session(self.services.engine) as session:
            self.token = create_token(session, "tests", "publisher")
        self.url = f"https://{s.host}:{s.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=s.host,
                port=s.port,
                ssl_certfile=s.cert_path,
                ssl_keyfile=s.key_path,
                log_level="warning",
                timeout_graceful_shutdown=1,  # idle keep-alive clients must not hold a stop
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def services(self) -> Services:
        return services_of(self.app)

    def __enter__(self) -> "RunningServer":
        self._thread.start()
        wait_until(lambda: self._server.started, "the image server started", 20)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def restart(self) -> None:
        """Stop serving, then serve again on the same port and app: its lifespan runs anew,
        as when uvicorn stops and starts the same application."""
        self.__exit__()
        self._server = uvicorn.Server(self._server.config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.__enter__()

    def client_settings(self, **overrides: Any) -> Settings:
        fields = {
            "state_dir": self.server_settings.state_dir,
            "server": {"url": self.url, "ca": self.server_settings.cert_path},
            "publisher_token": self.token,
            "deb_dir": DEBS,
        }
        return Settings.model_validate(fields | overrides)


def answers(settings: ServerSettings) -> bool:
    """The server at `settings` answers /healthz (its certificate may not exist yet)."""
    try:
        ca = ssl.create_default_context(cafile=settings.cert_path)
        httpx.get(f"https://{settings.host}:{settings.port}/healthz", verify=ca, timeout=1)
    except (httpx.TransportError, OSError):
        return False
    return True


def server_process(
    state_dir: Path, port: int, log: IO[bytes] | None = None, **env: str
) -> subprocess.Popen:
    """`icefloe server` in a process of its own (public feeds on), once it answers; its
    output to `log` (else ours); `env`: more ICEFLOE_* variables."""
    env = {
        "ICEFLOE_STATE_DIR": str(state_dir),
        "ICEFLOE_SERVER_PORT": str(port),
        "ICEFLOE_SERVER_PUBLIC_FEEDS": "true",
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "server"],
        env=os.environ | env,
        cwd=REPO_DIR,
        stdout=log,
        stderr=log,
    )
    settings = ServerSettings(state_dir=state_dir, port=port)

    def up() -> bool:
        alive(proc)
        return answers(settings)

    try:
        # A ceiling: a loaded 2-core CI machine imports slowly.
        wait_until(up, f"`icefloe server` answering on {port}", 120, every_s=0.1)
    except AssertionError:
        proc.kill()
        raise
    return proc


def token(server: RunningServer, scope: str, name: str = "t") -> str:
    with Session(server.services.engine) as session:
        return create_token(session, name, scope)


def client(server: RunningServer, secret: str) -> CatalogClient:
    """A CatalogClient acting with the token `secret`."""
    return CatalogClient(server.client_settings(), token=secret)


def http(server: RunningServer) -> httpx.Client:
    """A plain HTTPS client that trusts the server, as LXD or a browser would see it."""
    return httpx.Client(base_url=server.url, verify=tls(server))


def tls(server: RunningServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=server.server_settings.cert_path)
