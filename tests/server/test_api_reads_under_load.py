"""API routes that answer with a response model, under more parallel requests than the
server has worker threads and database connections (found by bench/load.py: with 15 of
200 clients reading the API, feeds and uploads answered 500 with QueuePool timeouts).

FastAPI validates a sync route's return value in a second worker-thread hop; the route's
session held the connection it read with until then: once every thread waited on the
pool and every connection waited for a thread, nothing moved until the pool timed out
(server_api/routing.py now closes the session as the route returns).
The server here has 4 threads and 4 connections, so 32 parallel listings are plenty."""

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.servers import RunningServer, tls


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ICEFLOE_SERVER_THREADS", "4")
        env.setenv("ICEFLOE_SERVER_DB_OVERFLOW", "0")
        with RunningServer(Path(tmp_path_factory.mktemp("small"))) as server:
            yield server


def test_parallel_listings_are_all_answered(small_server: RunningServer):
    async def listings() -> Counter[int | str]:
        async with httpx.AsyncClient(
            base_url=small_server.url,
            verify=tls(small_server),
            timeout=35,  # the pool gives up after 30 s
            headers={"Authorization": f"Bearer {small_server.token}"},
            limits=httpx.Limits(max_connections=32),
        ) as http:

            async def one() -> int | str:
                try:
                    return (await http.get("/api/v1/versions")).status_code
                except httpx.HTTPError as exc:
                    return type(exc).__name__

            return Counter(await asyncio.gather(*(one() for _ in range(32))))

    assert asyncio.run(listings()) == {200: 32}
