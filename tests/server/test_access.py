"""Access over real HTTPS: scoped, expiring, revocable tokens; private feeds per credential
that follow a channel and a flavour; no API ever returns a secret after creation."""

import hashlib
import time

import pytest
from sqlmodel import Session, select

from harness.publish import move, new_image, next_serial, pass_all, publish
from harness.servers import RunningServer, client, http, token
from server_api.models import Token


def test_operator_manages_tokens_and_sees_each_secret_once(image_server, operator, anonymous):
    r = operator._http.post("/api/v1/tokens", json={"name": "ci", "scope": "publisher"})
    assert r.status_code == 201
    issued = r.json()
    secret = issued["token"]
    assert secret.startswith("ifl_pub_") and issued["expires_at"] is None

    with Session(image_server.services.engine) as session:
        row = session.exec(select(Token).where(Token.id == issued["id"])).one()
    assert row.token_sha256 == hashlib.sha256(secret.encode()).hexdigest()

    listed = operator._http.get("/api/v1/tokens")
    assert listed.status_code == 200 and secret not in listed.text
    assert all("token" not in t for t in listed.json())
    assert any(t["id"] == issued["id"] and t["name"] == "ci" for t in listed.json())

    ci = client(image_server, secret)
    assert ci._http.head("/api/v1/files/" + "a" * 64).status_code == 404  # allowed in
    revoked = operator._http.post(f"/api/v1/tokens/{issued['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert secret not in revoked.text
    assert ci._http.head("/api/v1/files/" + "a" * 64).status_code == 401

    r = operator._http.post("/api/v1/tokens/999999/revoke")
    assert r.status_code == 404 and r.json()["detail"] == "no token with id 999999"


def test_expired_token_is_refused(image_server, operator):
    r = operator._http.post("/api/v1/tokens", json={"name": "short", "expires_in_s": 1})
    short = client(image_server, r.json()["token"])
    assert short._http.head("/api/v1/files/" + "a" * 64).status_code == 404
    time.sleep(1.2)
    assert short._http.head("/api/v1/files/" + "a" * 64).status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/tokens"),
        ("get", "/api/v1/tokens"),
        ("post", "/api/v1/tokens/1/revoke"),
        ("post", "/api/v1/credentials"),
        ("get", "/api/v1/credentials"),
        ("patch", "/api/v1/credentials/1"),
        ("post", "/api/v1/gc"),
    ],
)
def test_operator_routes_refuse_publishers_and_anonymous(catalog, anonymous, method, path):
    body = {"name": "x", "channel": "active", "grace_s": 0}
    r = catalog._http.request(method.upper(), path, json=body)
    assert r.status_code == 403 and "needs operator" in r.json()["detail"]
    assert anonymous.request(method.upper(), path, json=body).status_code == 401


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/tokens", {"name": "x", "scope": "root"}, "scope"),
        ("/api/v1/tokens", {"name": "", "scope": "operator"}, "name"),
        ("/api/v1/tokens", {"name": "x", "expires_in_s": 0}, "expires_in_s"),
        ("/api/v1/credentials", {"name": "x", "channel": "nightly"}, "channel"),
        ("/api/v1/credentials", {"name": "x", "flavour": "docker"}, "flavour"),
        ("/api/v1/credentials", {"name": "x", "expires_in_s": -5}, "expires_in_s"),
    ],
)
def test_bad_access_requests_are_422(operator, path, body, field):
    r = operator._http.post(path, json=body)
    assert r.status_code == 422
    assert field in {e["loc"][-1] for e in r.json()["detail"]}


def _feed(anonymous, path: str) -> dict:
    r = anonymous.get(f"{path}/streams/v1/images.json")
    assert r.status_code == 200, r.text
    return r.json()


def _versions(feed: dict, product: str) -> dict:
    return feed["products"].get(product, {}).get("versions", {})


def test_private_feed_follows_its_channel_and_flavour(catalog, operator, anonymous, tmp_path):
    image = new_image(arches=["x86_64"])
    product = f"{image.os}:one:amd64:default"
    testing, active = next_serial(), next_serial()
    publish(catalog, image, testing, tmp=tmp_path)
    published = publish(catalog, image, active, tmp=tmp_path).request
    move(catalog, image, testing, "testing")
    move(catalog, image, active, "testing")
    pass_all(catalog, image, active)
    move(catalog, image, active, "active")

    made = operator._http.post(
        "/api/v1/credentials", json={"name": "fleet", "channel": "active", "flavour": "lxd"}
    )
    assert made.status_code == 201
    cred = made.json()
    path = cred["feed_path"]
    feed = _feed(anonymous, path)
    assert list(_versions(feed, product)) == [active]
    items = _versions(feed, product)[active]["items"]
    assert set(items) == {"lxd.tar.xz", "root.squashfs"}
    assert items["lxd.tar.xz"]["ftype"] == "lxd.tar.xz"

    incus = operator._http.post(
        "/api/v1/credentials", json={"name": "lab", "channel": "testing", "flavour": "incus"}
    ).json()
    feed = _feed(anonymous, incus["feed_path"])
    assert list(_versions(feed, product)) == [testing]
    assert set(_versions(feed, product)[testing]["items"]) == {"incus.tar.xz", "root.squashfs"}

    listed = operator._http.get("/api/v1/credentials")
    secret = path.rsplit("/", 1)[1]
    assert secret not in listed.text and all("feed_path" not in c for c in listed.json())

    meta = next(f for f in published.arches[0].files if f.name == "lxd.tar.xz").sha256
    assert anonymous.get(f"{path}/files/{meta}").status_code == 200
    assert anonymous.get(f"{incus['feed_path']}/files/{meta}").status_code == 404

    moved = operator._http.patch(f"/api/v1/credentials/{cred['id']}", json={"channel": "testing"})
    assert moved.status_code == 200 and moved.json()["channel"] == "testing"
    assert list(_versions(_feed(anonymous, path), product)) == [testing]
    assert anonymous.get(f"{path}/files/{meta}").status_code == 404

    assert operator._http.post(f"/api/v1/credentials/{cred['id']}/revoke").status_code == 200
    for suffix in ("streams/v1/index.json", "streams/v1/images.json", f"files/{meta}"):
        r = anonymous.get(f"{path}/{suffix}")
        assert r.status_code == 403 and "revoked" in r.json()["detail"]


def test_expired_or_unknown_credential_is_refused(operator, anonymous):
    cred = operator._http.post("/api/v1/credentials", json={"name": "x", "expires_in_s": 1})
    path = cred.json()["feed_path"]
    assert anonymous.get(f"{path}/streams/v1/index.json").status_code == 200
    time.sleep(1.2)
    assert anonymous.get(f"{path}/streams/v1/index.json").status_code == 403
    assert anonymous.get("/feeds/iflf_made-up/streams/v1/index.json").status_code == 403
    assert anonymous.get("/feeds/" + "x" * 101 + "/streams/v1/index.json").status_code == 422
    r = operator._http.patch("/api/v1/credentials/999999", json={"channel": "active"})
    assert r.status_code == 404 and "no feed credential" in r.json()["detail"]


def test_public_channel_feeds_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("ICEFLOE_SERVER_PUBLIC_FEEDS", "false")
    with RunningServer(tmp_path) as server, http(server) as anonymous:
        for path in ("/channels/active", "/channels/testing/fresh/abc"):
            r = anonymous.get(f"{path}/streams/v1/index.json")
            assert r.status_code == 404 and "private feed" in r.json()["detail"]
        op = client(server, token(server, "operator"))
        cred = op._http.post("/api/v1/credentials", json={"name": "x"}).json()
        assert anonymous.get(f"{cred['feed_path']}/streams/v1/index.json").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/tokens", {"name": "x", "expires_in_s": 10**12}),
        ("post", "/api/v1/credentials", {"name": "x", "expires_in_s": 10**12}),
        ("post", "/api/v1/gc", {"grace_s": 10**12}),
        ("post", "/api/v1/tokens/99999999999999999999/revoke", None),
        ("patch", "/api/v1/credentials/0", {"channel": "active"}),
        ("post", "/api/v1/tokens", [1, 2]),
        ("post", "/api/v1/credentials", "not json"),
    ],
)
def test_out_of_range_numbers_and_wrong_shapes_are_422_not_500(operator, method, path, body):
    r = operator._http.request(method.upper(), path, json=body)
    assert r.status_code == 422 and r.json()["detail"]
