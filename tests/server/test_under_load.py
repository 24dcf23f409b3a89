"""The image server under concurrent load, on SQLite and on Postgres: many parallel
requests that look up a token or a feed credential are all answered, and uploads that
stall or crawl never hold up feeds (no database session is held while a body streams;
an idle body is cut off with 408)."""

import asyncio
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from core.catalog import Channel
from harness.publish import move, new_image, next_serial, publish
from harness.servers import RunningServer, client, tls
from harness.waiting import until
from server_api.schemas import CredentialCreate
from server_api.tokens import issue_credential
from tests.support import RawRequest, postgres_database

pytestmark = pytest.mark.slow  # hundreds of requests at once

IDLE_TIMEOUT_S = 1.0


class Loaded:
    """A server of this module's own with a version in testing and a private feed on it."""

    def __init__(self, server: RunningServer, tmp: Path) -> None:
        self.server = server
        publisher = client(server, server.token)
        image, serial = new_image(arches=["x86_64"]), next_serial()
        self.published = publish(publisher, image, serial, tmp=tmp).request
        move(publisher, image, serial, "testing")
        publisher.close()
        with Session(server.services.engine) as session:
            made = issue_credential(session, CredentialCreate(name="load", channel=Channel.testing))
        self.feed = made.feed_path
        self.sha256 = self.published.arches[0].files[1].sha256
        self.incoming = server.server_settings.files_dir / ".incoming"


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def loaded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Loaded]:
    tmp = tmp_path_factory.mktemp(f"load-{request.param}")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ICEFLOE_SERVER_BODY_IDLE_TIMEOUT_S", str(IDLE_TIMEOUT_S))
        if request.param == "postgres":
            url = request.getfixturevalue("postgres_load_url")
            env.setenv("ICEFLOE_SERVER_DATABASE_URL", url)
        with RunningServer(tmp) as server:
            yield Loaded(server, tmp)


@pytest.fixture(scope="module")
def postgres_load_url() -> Iterator[str]:
    with postgres_database("icefloe_load") as url:
        yield url


async def _answers(loaded: Loaded, requests: list[tuple[str, str, dict]]) -> list[int | str]:
    """Send all requests at once, each on its own connection: status codes, or the error."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=loaded.server.url, verify=tls(loaded.server), limits=limits, timeout=60
    ) as c:
        results = await asyncio.gather(
            *(c.request(method, url, headers=headers) for method, url, headers in requests),
            return_exceptions=True,
        )
    return [r.status_code if isinstance(r, httpx.Response) else type(r).__name__ for r in results]


def _tally(answers: list[int | str]) -> dict[int | str, int]:
    return {a: answers.count(a) for a in sorted(set(answers), key=str)}


async def test_parallel_private_feed_requests_are_all_answered(loaded: Loaded):
    url = f"{loaded.feed}/streams/v1/images.json"
    answers = await _answers(loaded, [("GET", url, {})] * 100)
    assert _tally(answers) == {200: 100}


async def test_parallel_authenticated_requests_are_all_answered(loaded: Loaded):
    auth = {"Authorization": f"Bearer {loaded.server.token}"}
    answers = await _answers(loaded, [("HEAD", f"/api/v1/files/{loaded.sha256}", auth)] * 200)
    assert _tally(answers) == {200: 200}


class RawUpload(RawRequest):
    """A PUT of `size` random bytes, sent as the test says."""

    def __init__(self, loaded: Loaded, size: int) -> None:
        super().__init__(loaded.server.server_settings)
        self.token = loaded.server.token
        self.size = size
        self.data = os.urandom(size)
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self.sent = 0

    async def start(self) -> None:
        target = f"/api/v1/files/{self.sha256}?size={self.size}"
        auth = f"Bearer {self.token}"
        await self.open("PUT", target, {"Authorization": auth, "Content-Length": str(self.size)})

    async def send_next(self, n: int) -> None:
        await self.send(self.data[self.sent : self.sent + n])
        self.sent += n


async def _slowly(upload: RawUpload, chunks: int, pause_s: float) -> int:
    """Send the whole body in `chunks` pieces, each pause shorter than the idle timeout."""
    await upload.start()
    for _ in range(chunks):
        await asyncio.sleep(pause_s)
        await upload.send_next(upload.size // chunks)
    return await upload.status()


async def _feeds_answer(loaded: Loaded) -> list[int | str]:
    return await _answers(
        loaded,
        [
            ("GET", "/channels/testing/streams/v1/images.json", {}),
            ("GET", f"{loaded.feed}/streams/v1/images.json", {}),
            ("GET", "/api/v1/versions", {}),
        ]
        * 5,
    )


async def test_stalled_and_slow_uploads_do_not_hold_up_feeds(loaded: Loaded):
    stalled = [RawUpload(loaded, 10_000) for _ in range(15)]
    for upload in stalled:
        await upload.start()
        await upload.send_next(1000)
    # Every stalled upload is in the store, writing its partial file.
    await until(lambda: len(list(loaded.incoming.iterdir())) >= 15, "15 uploads in progress")

    slow = RawUpload(loaded, 1000)
    slow_status, feed_answers = await asyncio.gather(
        _slowly(slow, chunks=10, pause_s=IDLE_TIMEOUT_S / 3), _feeds_answer(loaded)
    )
    assert _tally(feed_answers) == {200: 15}
    assert slow_status == 201  # slow, but never idle for the timeout: stored

    # The stalled ones are cut off after the idle timeout, and leave nothing behind.
    assert [await upload.status() for upload in stalled] == [408] * 15
    await until(lambda: not any(loaded.incoming.iterdir()), ".incoming/ empty again")
    with httpx.Client(base_url=loaded.server.url, verify=tls(loaded.server)) as c:
        auth = {"Authorization": f"Bearer {loaded.server.token}"}
        assert c.head(f"/api/v1/files/{slow.sha256}", headers=auth).status_code == 200
        assert c.head(f"/api/v1/files/{stalled[0].sha256}", headers=auth).status_code == 404
