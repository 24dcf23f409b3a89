"""POST /api/v1/refreshes and GET /api/v1/refreshes/{id} over real HTTPS, against a real
Temporal namespace with its workers: a refresh starts (202), its report is read back, names
not in the catalogue are outcomes in the report, and bad input gets a 4xx, never a 500."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from clients.catalog import CatalogClient
from core.config import Settings
from harness.refresh import definition, refreshing, write
from harness.servers import RunningServer, client, http
from harness.waiting import until

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]


@pytest_asyncio.fixture
async def ns(
    temporal: Client, catalog: CatalogClient, settings: Settings, tmp_path: Path
) -> AsyncIterator[Client]:
    images = tmp_path / "images"
    write(images, "one", definition("api-one"))
    async with refreshing(temporal, "icefloe-refresh-api", catalog, settings, images) as ns:
        yield ns


@pytest.fixture
def server(ns: Client, tmp_path: Path) -> Iterator[RunningServer]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ICEFLOE_TEMPORAL_ADDRESS", ns.service_client.config.target_host)
        env.setenv("ICEFLOE_TEMPORAL_NAMESPACE", ns.namespace)
        with RunningServer(tmp_path / "server") as running:
            yield running


async def test_a_refresh_is_started_and_read_back_and_bad_input_is_refused(
    server: RunningServer,
) -> None:
    publisher = client(server, server.token)
    api = publisher._http
    try:
        started = api.post("/api/v1/refreshes", json={"images": ["no-such-image"]})
        assert started.status_code == 202, started.text
        refresh_id = started.json()["refresh_id"]
        assert refresh_id.startswith("icefloe-refresh:")

        async def finished() -> dict | None:
            answer = await asyncio.to_thread(api.get, f"/api/v1/refreshes/{refresh_id}")
            now = answer.json()
            return now if now["status"] == "completed" else None

        done = await until(finished, "the refresh to complete", 120, 0.2)
        report = done["report"]
        assert [(i["image"], i["outcome"]) for i in report["images"]] == [
            ("no-such-image", "unknown-image")
        ]
        assert report["problems"] == [] and report["finished_at"]

        bad: list[dict] = [{"images": "one"}, {"images": []}, {"images": ["Not A"]}, {"x": 1}]
        for body in bad:
            refused = api.post("/api/v1/refreshes", json=body)
            assert refused.status_code == 422, (body, refused.text)
        missing = api.get("/api/v1/refreshes/icefloe-refresh:20990101-000000.000")
        assert missing.status_code == 404 and "no refresh" in missing.json()["detail"]
        assert api.get("/api/v1/refreshes/not-a-refresh").status_code == 422
        anonymous = http(server).post("/api/v1/refreshes", json={})
        assert anonymous.status_code == 401
    finally:
        publisher.close()
