"""Shared real parts for the tests: a Temporal dev server, the image server over HTTPS on
loopback, and workers for every arch the local LXD runs. Nothing here is a stand-in."""

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import pytest_asyncio
import uvicorn
from sqlmodel import Session
from temporalio.client import Client

from core.arch import KNOWN_ARCHES
from core.catalog_client import CatalogClient
from core.config import Settings
from core.lxd import connect_lxd, host_arches
from server_api.config import ServerSettings
from server_api.main import create_app
from server_api.tls import ensure_self_signed
from server_api.tokens import create_token
from tests.helpers import start_dev_server
from workers.arch import arch_worker
from workers.control import control_worker

DEBS = Settings().state_dir / "debs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningServer:
    """The image server in a thread of this process, like `icefloe server` runs it."""

    def __init__(self, state_dir: Path) -> None:
        self.server_settings = ServerSettings(state_dir=state_dir, port=free_port())
        s = self.server_settings
        ensure_self_signed(s.cert_path, s.key_path, s.host)
        self.app = create_app(s)
        with Session(self.app.state.engine) as session:
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
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> "RunningServer":
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert time.monotonic() < deadline, "image server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def client_settings(self, **overrides: object) -> Settings:
        return Settings(
            state_dir=self.server_settings.state_dir,
            server_url=self.url,
            server_ca=self.server_settings.cert_path,
            publisher_token=self.token,
            deb_dir=DEBS,
            **overrides,
        )


@pytest.fixture(scope="session")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("server")) as server:
        yield server


@pytest.fixture(scope="session")
def settings(image_server: RunningServer) -> Settings:
    return image_server.client_settings()


@pytest.fixture(scope="session")
def catalog(settings: Settings) -> Iterator[CatalogClient]:
    client = CatalogClient(settings)
    yield client
    client.close()


@pytest.fixture(scope="session")
def local_arches(settings: Settings) -> list[str]:
    """Arches the local LXD runs; the tests need two (x86_64 and i686 on these machines)."""
    return [a for a in host_arches(connect_lxd(settings)) if a in KNOWN_ARCHES]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal() -> AsyncIterator[Client]:
    async with await start_dev_server() as env:
        yield env.client


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def workers(
    temporal: Client, settings: Settings, catalog: CatalogClient, local_arches: list[str]
) -> AsyncIterator[list[str]]:
    """A control worker and one arch worker per local arch, all in this process."""
    with ThreadPoolExecutor(max_workers=16) as executor:
        running = [control_worker(temporal, catalog, executor)] + [
            arch_worker(temporal, arch, catalog, lambda: connect_lxd(settings), settings, executor)
            for arch in local_arches
        ]
        async with AsyncExitStack() as stack:
            for worker in running:
                await stack.enter_async_context(worker)
            yield local_arches
