"""Partial uploads a killed server left in `files/.incoming` are removed, by gc and when a
server starts, once untouched for longer than any live upload leaves its file: an upload
that sends nothing for `body_idle_timeout_s` is cut off. A live upload of another server
process sharing the store keeps its file meanwhile. The servers are `icefloe server`
processes, killed with SIGKILL."""

import asyncio
import hashlib
import os
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from core.config import ServerSettings
from harness.processes import free_port
from harness.servers import server_process
from harness.waiting import until
from server_api.db import make_engine
from server_api.tokens import create_token
from tests.support import RawRequest

IDLE_S = 1.0  # the servers' body_idle_timeout_s
STALE_S = 2 * IDLE_S  # untouched this long, a partial file belongs to no live upload
SIZE = 10_000


async def _begin(settings: ServerSettings, secret: str, data: bytes, sent: int) -> RawRequest:
    """An upload of `data` that has sent its first `sent` bytes."""
    upload = RawRequest(settings)
    sha = hashlib.sha256(data).hexdigest()
    headers = {"Authorization": f"Bearer {secret}", "Content-Length": str(len(data))}
    await upload.open("PUT", f"/api/v1/files/{sha}?size={len(data)}", headers)
    await upload.send(data[:sent])
    return upload


@asynccontextmanager
async def _trickling(settings: ServerSettings, secret: str) -> AsyncIterator[RawRequest]:
    """A live upload sending a byte every IDLE_S / 5 until the block ends, then the rest:
    it must be stored (201)."""
    data = os.urandom(SIZE)
    upload = await _begin(settings, secret, data, 1)
    done = asyncio.Event()

    async def trickle() -> None:
        for at in range(1, SIZE - 1):
            if done.is_set():
                await upload.send(data[at:])
                return
            await upload.send(data[at : at + 1])
            await asyncio.sleep(IDLE_S / 5)

    task = asyncio.create_task(trickle())
    try:
        yield upload
    finally:
        done.set()
        await task
    assert await upload.status() == 201


def _serve(state: Path, port: int):
    return asyncio.to_thread(server_process, state, port)  # its start-up polls block; uploads go on


def _killed(proc) -> None:
    proc.kill()  # SIGKILL: nothing of the server's own clean-up runs
    proc.wait(10)


def _stopped(proc) -> None:
    proc.terminate()
    proc.wait(10)


async def test_partial_uploads_of_a_killed_server_go_and_live_ones_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ICEFLOE_SERVER_BODY_IDLE_TIMEOUT_S", str(IDLE_S))
    state = tmp_path / "state"
    first = ServerSettings(state_dir=state, port=free_port())
    other = first.model_copy(update={"port": free_port()})
    with Session(make_engine(first.db_url)) as session:
        publisher = create_token(session, "uploads", "publisher")
        operator = create_token(session, "gc", "operator")
    incoming = first.files_dir / ".incoming"

    async def killed_mid_upload() -> Path:
        """The partial file of an upload to a server on `first.port` killed meanwhile."""
        before = set(incoming.iterdir())
        killed = await _serve(state, first.port)
        upload = await _begin(first, publisher, os.urandom(SIZE), 1000)
        await until(lambda: len(set(incoming.iterdir()) - before) == 1, "the upload's file")
        [partial] = set(incoming.iterdir()) - before
        _killed(killed)
        upload.writer.close()
        return partial

    sharing = await _serve(state, other.port)  # another server process on the same store
    try:
        async with _trickling(other, publisher):
            await until(lambda: any(incoming.iterdir()), "the live upload's file")
            [live] = incoming.iterdir()
            partial = await killed_mid_upload()
            async with httpx.AsyncClient(
                base_url=f"https://127.0.0.1:{other.port}",
                verify=ssl.create_default_context(cafile=other.cert_path),
                headers={"Authorization": f"Bearer {operator}"},
            ) as api:

                async def collected() -> bool:
                    answer = await api.post("/api/v1/gc", json={"grace_s": 0})
                    assert answer.status_code == 200, answer.text
                    return not partial.exists()

                deadline = time.monotonic() + 60  # a ceiling for a loaded machine
                while not await collected():
                    assert time.monotonic() < deadline, "gc left the killed server's upload"
                    await asyncio.sleep(IDLE_S / 2)
            assert live.exists()

            partial = await killed_mid_upload()
            await until(
                lambda: time.time() - partial.stat().st_mtime > STALE_S, "the file going stale"
            )
            _stopped(await _serve(state, first.port))  # restarted on the same state
            assert set(incoming.iterdir()) == {live}
    finally:
        _stopped(sharing)
    assert not any(incoming.iterdir())
