"""The image server over real HTTPS: channel feeds, the promotion gate, and bad input."""

import hashlib
import itertools

import httpx
import pytest

from clients.catalog import CatalogClient, CatalogRejected
from core.catalog import AssessmentReport, AssessmentState, FileType, TransitionRequest
from core.spec import ImageSpec
from harness.publish import fake_files, publish

_serials = (f"20261125-{n:04d}" for n in itertools.count(1))


@pytest.fixture
def image() -> ImageSpec:
    return ImageSpec(
        os="apitest",
        release="one",
        arches=["x86_64", "i686"],
        aliases=["apitest"],
        checks=["boots"],
    )


@pytest.fixture
def serial() -> str:
    return next(_serials)


def feed(catalog: CatalogClient, channel: str) -> dict:
    r = catalog._http.get(f"/channels/{channel}/streams/v1/images.json")
    r.raise_for_status()
    return r.json()


def to_testing(catalog: CatalogClient, image: ImageSpec, serial: str):
    return catalog.transition(image.name, serial, TransitionRequest(to="testing", reason="test"))


def test_version_in_testing_is_only_in_the_testing_feed(catalog, image, serial, tmp_path):
    publish(catalog, image, serial, tmp=tmp_path)
    assert catalog.version(image.name, serial).state == "created"
    to_testing(catalog, image, serial)

    testing = feed(catalog, "testing")["products"]
    product = testing["apitest:one:amd64:default"]
    assert serial in product["versions"]
    assert product["arch"] == "amd64" and "apitest:one:i386:default" in testing
    items = product["versions"][serial]["items"]
    assert items["lxd.tar.xz"]["combined_squashfs_sha256"]
    assert items["root.squashfs"]["ftype"] == "squashfs"

    active = feed(catalog, "active")["products"]
    versions = active.get("apitest:one:amd64:default", {}).get("versions", {})
    assert serial not in versions


def test_fingerprint_is_computed_by_the_server(catalog, image, serial, tmp_path):
    req = publish(catalog, image, serial, tmp=tmp_path).request
    files = {f.ftype: f for f in req.arches[0].files}
    blobs = [tmp_path / f"x86_64-{files[t].name}" for t in (FileType.metadata, FileType.squashfs)]
    expected = hashlib.sha256(b"".join(p.read_bytes() for p in blobs)).hexdigest()
    arch = next(a for a in catalog.version(image.name, serial).arches if a.arch == "x86_64")
    assert arch.fingerprint == expected


def test_promotion_needs_every_required_check_on_every_arch(catalog, image, serial, tmp_path):
    publish(catalog, image, serial, tmp=tmp_path)
    to_testing(catalog, image, serial)
    promote = TransitionRequest(to="active", reason="test")
    with pytest.raises(CatalogRejected) as exc:
        catalog.transition(image.name, serial, promote)
    assert exc.value.status_code == 409 and "x86_64: boots" in str(exc.value)

    passed = AssessmentReport(arch="x86_64", check="boots", host="h1", state="passed")
    catalog.record(image.name, serial, passed)
    with pytest.raises(CatalogRejected, match="i686: boots"):
        catalog.transition(image.name, serial, promote)

    catalog.record(image.name, serial, passed.model_copy(update={"arch": "i686"}))
    assert catalog.transition(image.name, serial, promote).state == "active"
    assert serial in feed(catalog, "active")["products"]["apitest:one:i386:default"]["versions"]


def test_passed_is_final(catalog, image, serial, tmp_path):
    publish(catalog, image, serial, tmp=tmp_path)
    report = AssessmentReport(arch="i686", check="boots", host="h1", state="passed")
    catalog.record(image.name, serial, report)
    with pytest.raises(CatalogRejected) as exc:
        catalog.record(
            image.name, serial, report.model_copy(update={"state": AssessmentState.failed})
        )
    assert exc.value.status_code == 409


def test_invalid_transition_is_409_with_reason(catalog, image, serial, tmp_path):
    publish(catalog, image, serial, tmp=tmp_path)
    with pytest.raises(CatalogRejected) as exc:
        catalog.transition(image.name, serial, TransitionRequest(to="active", reason="skip"))
    assert exc.value.status_code == 409
    assert "is created; it cannot go to active" in str(exc.value)


def test_republishing_same_files_is_a_no_op_other_files_409(catalog, image, serial, tmp_path):
    req = publish(catalog, image, serial, tmp=tmp_path).request
    assert catalog.publish(req).serial == serial
    with pytest.raises(CatalogRejected) as exc:
        publish(catalog, image, serial, tmp=tmp_path)
    assert exc.value.status_code == 409 and "new serial" in str(exc.value)


def test_upload_with_wrong_hash_or_size_is_rejected_and_leaves_nothing(
    catalog, image_server, tmp_path
):
    (file, path), _ = fake_files(tmp_path)
    wrong_hash = file.model_copy(update={"sha256": "0" * 64})
    with pytest.raises(CatalogRejected) as exc:
        catalog.upload(path, wrong_hash)
    assert exc.value.status_code == 422 and "sha256" in str(exc.value)

    r = catalog._http.put(
        f"/api/v1/files/{file.sha256}", params={"size": file.size + 1}, content=path.read_bytes()
    )
    assert r.status_code == 422 and "declared" in r.json()["detail"]
    store = image_server.services.store
    assert not store.exists(file.sha256) and not store.exists("0" * 64)
    assert not list(store.root.rglob(".upload-*"))


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("put", "/api/v1/files/not-a-hash?size=1", None, 422),
        ("post", "/api/v1/versions", {"serial": "yesterday"}, 422),
        ("get", "/api/v1/images/nope:nope:nope/versions/20260101", None, 404),
        ("get", "/channels/nightly/streams/v1/images.json", None, 422),
        ("get", "/channels/active/files/" + "a" * 64, None, 404),
    ],
)
def test_bad_requests_get_a_clear_4xx(catalog, method, path, body, status):
    r = catalog._http.request(method.upper(), path, json=body)
    assert r.status_code == status
    assert r.json()["detail"]


def test_publish_rejects_unknown_arch_and_bad_serial(catalog, image):
    body = {"image": image.model_dump() | {"arches": ["sparc"]}, "serial": "2026-1", "arches": []}
    r = catalog._http.post("/api/v1/versions", json=body)
    assert r.status_code == 422
    fields = {".".join(map(str, e["loc"][1:])) for e in r.json()["detail"]}
    assert {"image.arches.0", "serial", "arches"} <= fields


def test_write_api_needs_a_publisher_token(image_server, catalog):
    anonymous = httpx.Client(base_url=image_server.url, verify=False)
    r = anonymous.post("/api/v1/versions", json={})
    assert r.status_code == 401 and "publisher token" in r.json()["detail"]
    r = anonymous.put(
        "/api/v1/files/" + "a" * 64,
        params={"size": 1},
        content=b"x",
        headers={"Authorization": "Bearer wrong"},
    )
    assert r.status_code == 401


def test_feed_has_etag_and_answers_304(catalog):
    first = catalog._http.get("/channels/testing/streams/v1/index.json")
    etag = first.headers["etag"]
    again = catalog._http.get(
        "/channels/testing/streams/v1/index.json", headers={"If-None-Match": etag}
    )
    assert again.status_code == 304
