"""Clients of the shared image server with other credentials than the publisher's."""

from collections.abc import Iterator

import httpx
import pytest

from clients.catalog import CatalogClient
from tests.support import RunningServer, client, http, token


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
