"""Clients of the shared image server with other credentials than the publisher's, and a
server of its own with the project's nginx in front."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clients.catalog import CatalogClient
from harness.front import Front, nginx_front
from harness.servers import RunningServer, client, http, token


@pytest.fixture(scope="module")
def operator(image_server: RunningServer) -> Iterator[CatalogClient]:
    """A catalog client with an operator token named ops-alice (the audit trail's actor)."""
    c = client(image_server, token(image_server, "operator", "ops-alice"))
    yield c
    c.close()


@pytest.fixture(scope="module")
def anonymous(image_server: RunningServer) -> Iterator[httpx.Client]:
    """Plain HTTPS without a token, as LXD or a browser sees the server."""
    with http(image_server) as c:
        yield c


@pytest.fixture
def fronted(tmp_path: Path) -> Iterator[tuple[RunningServer, Front]]:
    """A server of the test's own and the project's nginx in front of it."""
    with (
        RunningServer(tmp_path / "server", accel_redirect=True) as server,
        nginx_front(server, tmp_path / "nginx") as front,
    ):
        yield server, front
