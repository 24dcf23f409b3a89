"""Bad or oversized input gets a clear 4xx early, never a 500, and costs the server little:
writes are authenticated before their body is read, JSON bodies are capped."""

import hashlib
import os

import pytest

from tests.support import RawRequest, RunningServer, http

BIG = 200_000_000  # what a client may declare; the tests never send more than a little of it
MAX_JSON = 1 << 20  # the default cap on JSON bodies


async def _answer_to_partial_body(
    server: RunningServer, method: str, target: str, headers: dict[str, str], sent: int = 1000
) -> int:
    """Declare a body of BIG bytes, send `sent` of them, and wait for the answer."""
    request = RawRequest(server)
    await request.open(method, target, headers | {"Content-Length": str(BIG)})
    await request.send(b"{" + b" " * (sent - 1))
    return await request.status(timeout_s=10)


@pytest.mark.parametrize("authorization", [None, "Bearer ifl_pub_not-a-token", "Basic eDp5"])
async def test_a_write_without_a_valid_token_is_refused_before_its_body(
    image_server: RunningServer, authorization: str | None
):
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    for target in ("/api/v1/versions", "/api/v1/gc", "/api/v1/tokens"):
        assert await _answer_to_partial_body(image_server, "POST", target, headers) == 401


async def test_a_json_body_over_the_cap_is_refused_with_413(image_server: RunningServer):
    headers = {"Authorization": f"Bearer {image_server.token}"}
    json = headers | {"Content-Type": "application/json"}
    # Declared too big: refused before any of it is read.
    assert await _answer_to_partial_body(image_server, "POST", "/api/v1/versions", json) == 413
    # Chunked, no size declared: refused once more than the cap arrived.
    request = RawRequest(image_server)
    await request.open("POST", "/api/v1/versions", json | {"Transfer-Encoding": "chunked"})
    chunk = b" " * 65536
    for _ in range(2 * MAX_JSON // len(chunk)):
        await request.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    assert await request.status(timeout_s=10) == 413

    # File uploads are not JSON: they keep their own limit.
    data = os.urandom(2 * MAX_JSON)
    with http(image_server) as c:
        answer = c.put(
            f"/api/v1/files/{hashlib.sha256(data).hexdigest()}",
            params={"size": len(data)},
            content=data,
            headers=headers,
        )
    assert answer.status_code == 201
