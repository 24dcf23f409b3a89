"""Bad or oversized input gets a clear 4xx early, never a 500, and costs the server little:
writes are authenticated before their body is read, JSON bodies are capped."""

import hashlib
import logging
import os
from collections.abc import Iterator

import httpx
import pytest

from harness.publish import move, new_image, next_serial, publish
from harness.servers import RunningServer, client, http
from harness.waiting import until
from tests.support import RawRequest

BIG = 200_000_000  # what a client may declare; the tests never send more than a little of it
MAX_JSON = 1 << 20  # the default cap on JSON bodies


async def _answer_to_partial_body(
    server: RunningServer, method: str, target: str, headers: dict[str, str], sent: int = 1000
) -> int:
    """Declare a body of BIG bytes, send `sent` of them, and wait for the answer."""
    request = RawRequest(server.server_settings)
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
    request = RawRequest(image_server.server_settings)
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


@pytest.fixture(scope="module")
def publisher(image_server: RunningServer) -> Iterator[httpx.Client]:
    with http(image_server) as c:
        c.headers["Authorization"] = f"Bearer {image_server.token}"
        yield c


@pytest.fixture(scope="module")
def version(image_server: RunningServer, publisher: httpx.Client, tmp_path_factory) -> dict:
    """A version in testing, published for these tests: its publish request as JSON."""
    catalog = client(image_server, image_server.token)
    image, serial = new_image(arches=["x86_64"]), next_serial()
    req = publish(catalog, image, serial, tmp=tmp_path_factory.mktemp("bounds")).request
    move(catalog, image, serial, "testing")
    catalog.close()
    return req.model_dump(mode="json")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_a_json_body_are_refused(
    publisher: httpx.Client, version: dict, constant: str
):
    name, serial = version["spec"]["os"] + ":one:default", version["serial"]
    body = '{"arch": "x86_64", "check": "boots", "host": "h", "state": "passed", "duration_s": %s}'
    answer = publisher.put(
        f"/api/v1/images/{name}/versions/{serial}/assessments",
        content=body % constant,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert constant.lstrip("-") in answer.json()["detail"]
    gc = publisher.post("/api/v1/gc", content=f'{{"grace_s": {constant}}}')
    assert gc.status_code == 422


def _digits(zero: int) -> dict[int, int]:
    """A translation of ASCII digits to the Unicode digits that start at code point `zero`."""
    return str.maketrans("0123456789", "".join(chr(zero + d) for d in range(10)))


def test_a_serial_must_start_with_ascii_digits(publisher: httpx.Client, version: dict):
    fullwidth, arabic_indic = _digits(0xFF10), _digits(0x0660)
    for serial in ("20261126-1".translate(fullwidth), "20261126".translate(arabic_indic)):
        answer = publisher.post("/api/v1/versions", json=version | {"serial": serial})
        assert answer.status_code == 422, (serial, answer.text)
        assert "serial" in answer.text


@pytest.mark.parametrize(
    "field, value",
    [
        ("release_title", "t" * 10_000),
        ("requirements", {f"key{n}": "true" for n in range(10_000)}),
        ("requirements", {"k" * 1000: "true"}),
        ("requirements", {"secureboot": "v" * 10_000}),
        ("aliases", [f"a{n}" for n in range(1000)]),
    ],
)
def test_text_that_goes_into_feeds_is_bounded(
    publisher: httpx.Client, version: dict, field: str, value: object
):
    spec = version["spec"] | {field: value}
    answer = publisher.post("/api/v1/versions", json=version | {"spec": spec})
    assert answer.status_code == 422, answer.text[:300]
    assert field in answer.text


def test_a_workflow_id_is_bounded(publisher: httpx.Client, version: dict):
    long = "w" * 10_000
    answer = publisher.post("/api/v1/versions", json=version | {"workflow_id": long})
    assert answer.status_code == 422
    name, serial = version["spec"]["os"] + ":one:default", version["serial"]
    move = {"to": "inactive", "reason": "bounds", "workflow_id": long}
    answer = publisher.post(f"/api/v1/images/{name}/versions/{serial}/transitions", json=move)
    assert answer.status_code == 422
    assert "workflow_id" in answer.text


def test_feed_documents_answer_conditional_requests_and_head(image_server: RunningServer):
    with http(image_server) as anonymous:
        for doc in ("index.json", "images.json"):
            url = f"/channels/testing/streams/v1/{doc}"
            full = anonymous.get(url)
            etag = full.headers["ETag"]
            for if_none_match in (etag, f"W/{etag}", "*", f'"other", {etag}', f'"x", W/{etag}'):
                answer = anonymous.get(url, headers={"If-None-Match": if_none_match})
                assert answer.status_code == 304, (doc, if_none_match)
                assert answer.headers["ETag"] == etag
            assert anonymous.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
            head = anonymous.head(url)
            assert head.status_code == 200, doc
            assert head.content == b""
            assert head.headers["ETag"] == etag
            assert head.headers["Content-Length"] == str(len(full.content))


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_client_disconnecting_mid_upload_is_one_log_line(
    image_server: RunningServer, caplog: pytest.LogCaptureFixture
):
    data = os.urandom(10_000)
    upload = RawRequest(image_server.server_settings)
    incoming = image_server.server_settings.files_dir / ".incoming"
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO):
            await upload.open(
                "PUT",
                f"/api/v1/files/{hashlib.sha256(data).hexdigest()}?size={len(data)}",
                {"Authorization": f"Bearer {image_server.token}", "Content-Length": "10000"},
            )
            await upload.send(data[:1000])
            await until(lambda: any(incoming.iterdir()), "the upload writing its file")
            upload.writer.transport.abort()
            await until(lambda: not any(incoming.iterdir()), "the partial file removed")
            await until(lambda: bool(_warnings(caplog)), "a log line")
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    [line] = _warnings(caplog)
    assert line.exc_info is None and "disconnected" in line.getMessage()
