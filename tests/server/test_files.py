"""Files over real HTTPS: verified streamed uploads that leave nothing behind when refused,
and downloads with HEAD, Range and ETag as LXD and resumable clients use them."""

import hashlib
import os

import pytest

from core.catalog import TransitionRequest
from harness.publish import new_image, next_serial, publish
from harness.servers import http


@pytest.fixture(scope="module")
def anonymous(image_server):
    with http(image_server) as c:
        yield c


def _leftovers(image_server) -> set[str]:
    return {str(p) for p in image_server.services.store.root.rglob("*")}


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("/api/v1/files/" + "A" * 64, {"size": 1}, 422, "should match pattern"),
        ("/api/v1/files/abc", {"size": 1}, 422, "should match pattern"),
        ("/api/v1/files/..%2F..%2Fcatalog.db", {"size": 1}, 404, "Not Found"),
        ("/api/v1/files/" + "a" * 64, {"size": -1}, 422, "greater than or equal to 0"),
        ("/api/v1/files/" + "a" * 64, {}, 422, "Field required"),
        ("/api/v1/files/" + "a" * 64, {"size": 9 * 1024**3}, 413, "over the limit"),
        ("/api/v1/files/" + "a" * 64, {"size": 3}, 422, "more than the declared 3 bytes"),
        ("/api/v1/files/" + "a" * 64, {"size": 64}, 422, "declared 64 bytes, received 32"),
    ],
)
def test_refused_uploads_say_why_and_leave_nothing(
    catalog, image_server, path, params, status, message
):
    before = _leftovers(image_server)
    r = catalog._http.put(path, params=params, content=os.urandom(32))
    assert r.status_code == status and message in r.text
    assert _leftovers(image_server) == before


def test_same_content_again_is_a_no_op_and_a_size_clash_is_409(catalog, tmp_path):
    data = os.urandom(1000)
    sha = hashlib.sha256(data).hexdigest()
    first = catalog._http.put(f"/api/v1/files/{sha}", params={"size": 1000}, content=data)
    again = catalog._http.put(f"/api/v1/files/{sha}", params={"size": 1000}, content=data)
    assert (first.status_code, first.json()["stored"]) == (201, True)
    assert again.json()["stored"] is False
    clash = catalog._http.put(f"/api/v1/files/{sha}", params={"size": 999}, content=data[:999])
    assert clash.status_code == 409 and "stored with size 1000" in clash.json()["detail"]


@pytest.fixture(scope="module")
def served(catalog, tmp_path_factory) -> tuple[str, bytes]:
    """A rootfs in the testing channel: its URL and bytes."""
    tmp = tmp_path_factory.mktemp("served")
    image, serial = new_image(arches=["x86_64"]), next_serial()
    req = publish(catalog, image, serial, tmp=tmp).request
    catalog.transition(image.name, serial, TransitionRequest(to="testing", reason="t"))
    rootfs = next(f for f in req.arches[0].files if f.name == "rootfs.squashfs")
    return f"/channels/testing/files/{rootfs.sha256}", (tmp / "x86_64-rootfs.squashfs").read_bytes()


def test_head_answers_size_and_etag_without_a_body(anonymous, served):
    url, data = served
    r = anonymous.head(url)
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) == len(data)
    assert r.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert r.headers["accept-ranges"] == "bytes"


def test_range_requests(anonymous, served):
    url, data = served
    r = anonymous.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(data)}"
    r = anonymous.get(url, headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]
    r = anonymous.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    r = anonymous.get(url, headers={"Range": "lines=1-2"})
    assert r.status_code == 400


def test_etag_gives_304_and_if_range_resumes_only_the_same_content(anonymous, served):
    url, data = served
    etag = anonymous.head(url).headers["etag"]
    r = anonymous.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    r = anonymous.get(url, headers={"Range": "bytes=0-0", "If-Range": etag})
    assert r.status_code == 206 and r.content == data[:1]
    r = anonymous.get(url, headers={"Range": "bytes=0-0", "If-Range": '"other"'})
    assert r.status_code == 200 and r.content == data


def test_if_none_match_compares_weakly_as_the_feeds_do(anonymous, served):
    """RFC 9110: `*`, a weak tag or a list naming the tag all mean "you have it"."""
    url, data = served
    etag = anonymous.head(url).headers["etag"]
    for if_none_match in (f"W/{etag}", "*", f'"other", {etag}', f'"x", W/{etag}'):
        r = anonymous.get(url, headers={"If-None-Match": if_none_match})
        assert (r.status_code, r.content) == (304, b""), if_none_match
        assert r.headers["etag"] == etag
    r = anonymous.get(url, headers={"If-None-Match": '"other", W/"else"'})
    assert r.status_code == 200 and r.content == data


def test_files_outside_the_channel_are_not_served(anonymous, served):
    url, _ = served
    assert anonymous.get(url.replace("/testing/", "/active/")).status_code == 404
    assert anonymous.get("/channels/testing/files/..%2F..%2Fcatalog.db").status_code == 404
    assert anonymous.get("/channels/testing/files/" + "Z" * 64).status_code == 422


def test_content_lost_from_disk_is_asked_for_again(catalog, image_server):
    data = os.urandom(100)
    sha = hashlib.sha256(data).hexdigest()
    catalog._http.put(f"/api/v1/files/{sha}", params={"size": 100}, content=data)
    assert catalog._http.head(f"/api/v1/files/{sha}").status_code == 200
    image_server.services.store.delete(sha)
    assert catalog._http.head(f"/api/v1/files/{sha}").status_code == 404
    again = catalog._http.put(f"/api/v1/files/{sha}", params={"size": 100}, content=data)
    assert again.json()["stored"] is True and image_server.services.store.exists(sha)
