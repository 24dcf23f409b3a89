"""Private feeds through the project's nginx (deploy/nginx, its njs check): a usable
credential reads its channel's static tree without a request to the server, and
whatever changes (revocation, expiry, a move to another channel, a catalog change the
trees do not show yet) applies on the very next request, answered by the server as
before. Real nginx, real server, real HTTPS."""

import fcntl
import hashlib
import json
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from core.catalog import Channel
from core.spec import ImageSpec
from harness.front import Front, credential, listed, wait_written
from harness.publish import move, new_image, pass_all, publish
from harness.servers import RunningServer, client, token
from harness.waiting import wait_until
from server_api.schemas import CredentialCreate
from server_api.tokens import issue_credential
from tests.support import icefloe_token as icefloe

pytestmark = pytest.mark.nginx


REFUSED = "this feed's credential is unknown, expired or revoked"


def feed_requests(server: RunningServer) -> float:
    """Private feed requests the server answered, by its own metrics."""
    return sum(
        sample.value
        for metric in server.services.metrics.requests.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["route"].startswith("/feeds/")
    )


def operator_call(server: RunningServer, method: str, path: str, **kwargs: object) -> dict:
    operator = client(server, token(server, "operator"))
    try:
        answer = operator._http.request(method, path, **kwargs)  # type: ignore[arg-type]
        answer.raise_for_status()
        return answer.json()
    finally:
        operator.close()


def web(front: Front) -> httpx.Client:
    return httpx.Client(base_url=front.url, verify=front.trust())


def squashfs_path(images_json: bytes, serial: str) -> str:
    return next(
        item["path"]
        for product in json.loads(images_json)["products"].values()
        for item in product["versions"].get(serial, {"items": {}})["items"].values()
        if item["ftype"] == "squashfs"
    )


def in_testing(server: RunningServer, tmp: Path, image: ImageSpec) -> tuple[str, str, int]:
    """A version of `image` in testing and a new private testing feed, the trees written:
    the version's serial, the feed's path and its credential's id."""
    serial = publish(server, image, tmp=tmp, to=("testing",)).serial
    private, credential_id = credential(server, "testing")
    wait_written(server)
    return serial, private, credential_id


def test_a_private_feed_comes_from_the_tree_without_asking_the_server(
    fronted: tuple[RunningServer, Front], tmp_path: Path
):
    server, front = fronted
    serial, private, _ = in_testing(server, tmp_path, new_image())
    tree = server.server_settings.static_root / "testing-lxd/current"
    before = feed_requests(server)
    with web(front) as w:
        index = w.get(f"{private}/streams/v1/index.json")
        images = w.get(f"{private}/streams/v1/images.json")
        path = squashfs_path(images.content, serial)
        whole = w.get(f"{private}/{path}")
        ranged = w.get(f"{private}/{path}", headers={"Range": "bytes=0-9"})
        head = w.head(f"{private}/streams/v1/images.json")
    assert index.status_code == images.status_code == whole.status_code == head.status_code == 200
    assert index.content == (tree / "streams/v1/index.json").read_bytes()
    assert images.content == (tree / "streams/v1/images.json").read_bytes()
    assert images.headers["content-type"] == "application/json"
    assert images.headers["cache-control"] == "no-cache"
    assert whole.content == (tree / path).read_bytes()
    assert ranged.status_code == 206 and ranged.content == whole.content[:10]
    assert feed_requests(server) == before, "nginx answered all of them itself"


def test_revoking_refuses_the_very_next_request_with_the_servers_message(
    fronted: tuple[RunningServer, Front], tmp_path: Path
):
    server, front = fronted
    serial, private, credential_id = in_testing(server, tmp_path, new_image())
    with web(front) as w:
        images = w.get(f"{private}/streams/v1/images.json")
        path = squashfs_path(images.content, serial)
        assert images.status_code == 200 and w.get(f"{private}/{path}").status_code == 200
        operator_call(server, "POST", f"/api/v1/credentials/{credential_id}/revoke")
        for url in (f"{private}/streams/v1/images.json", f"{private}/{path}"):
            refused = w.get(url)
            assert refused.status_code == 403 and refused.json()["detail"] == REFUSED


def test_a_move_to_another_channel_shows_on_the_next_request(
    fronted: tuple[RunningServer, Front], tmp_path: Path
):
    server, front = fronted
    image = new_image()
    in_testing = publish(server, image, tmp=tmp_path, to=("testing",)).serial
    in_active = publish(server, image, tmp=tmp_path, to=("testing",)).serial
    catalog = client(server, server.token)
    pass_all(catalog, image, in_active)
    move(catalog, image, in_active, "active")
    catalog.close()
    private, credential_id = credential(server, "testing")
    wait_written(server)
    with web(front) as w:
        shown = listed(w.get(f"{private}/streams/v1/images.json").content)
        assert in_testing in shown and in_active not in shown
        body = {"channel": "active"}
        operator_call(server, "PATCH", f"/api/v1/credentials/{credential_id}", json=body)
        moved = w.get(f"{private}/streams/v1/images.json")
    assert in_active in listed(moved.content) and in_testing not in listed(moved.content)
    tree = server.server_settings.static_root / "active-lxd/current"
    assert moved.content == (tree / "streams/v1/images.json").read_bytes()


def test_an_expired_credential_is_refused(fronted: tuple[RunningServer, Front], tmp_path: Path):
    server, front = fronted
    publish(server, new_image(), tmp=tmp_path, to=("testing",))
    body = {"name": f"f-{uuid.uuid4().hex[:6]}", "channel": "testing", "expires_in_s": 2}
    issued = operator_call(server, "POST", "/api/v1/credentials", json=body)
    wait_written(server)
    with web(front) as w:
        url = f"{issued['feed_path']}/streams/v1/index.json"
        assert w.get(url).status_code == 200
        time.sleep(2.2)
        refused = w.get(url)
    assert refused.status_code == 403 and refused.json()["detail"] == REFUSED
    files = list((server.server_settings.static_root / "credentials").iterdir())
    assert any(not f.name.startswith(".") for f in files), "nginx saw its file and its expiry"


def test_a_bogus_secret_gets_the_servers_refusal(fronted: tuple[RunningServer, Front]):
    _, front = fronted
    with web(front) as w:
        for secret in ("iflf_nothing", "x" * 100, "iflf_" + "a" * 43):
            refused = w.get(f"/feeds/{secret}/streams/v1/index.json")
            assert refused.status_code == 403 and refused.json()["detail"] == REFUSED
        assert w.get(f"/feeds/{'x' * 101}/streams/v1/index.json").status_code == 422
        assert w.get("/feeds/a%2e%2e/streams/v1/index.json").status_code in (403, 404)


def test_a_catalog_change_the_trees_do_not_show_yet_comes_from_the_server(
    fronted: tuple[RunningServer, Front], tmp_path: Path
):
    """The trees' writer held up (its lock taken here): a version published and answered
    is in the very next private feed all the same, rendered by the server."""
    server, front = fronted
    image = new_image()
    _, private, _ = in_testing(server, tmp_path, image)
    root = server.server_settings.static_root
    with (root / ".lock").open("a") as lock, web(front) as w:
        fcntl.flock(lock, fcntl.LOCK_EX)
        newer = publish(server, image, tmp=tmp_path, to=("testing",)).serial
        before = feed_requests(server)
        shown = w.get(f"{private}/streams/v1/images.json")
        assert newer in listed(shown.content)
        assert newer not in listed(
            (root / "testing-lxd/current/streams/v1/images.json").read_bytes()
        )
        # The server counts a request once its answer is sent: the client may read it first.
        wait_until(lambda: feed_requests(server) == before + 1, "the server answered it")
    wait_written(server)
    with web(front) as w:
        assert newer in listed(w.get(f"{private}/streams/v1/images.json").content)


def test_no_reader_gets_a_feed_after_the_revocation_answered(
    fronted: tuple[RunningServer, Front], tmp_path: Path
):
    """Readers hammer a private feed through nginx while it is revoked: every request
    sent after the revocation answered is refused (a few rounds, bounded)."""
    server, front = fronted
    publish(server, new_image(), tmp=tmp_path, to=("testing",))
    wait_written(server)
    for _ in range(5):
        private, credential_id = credential(server, "testing")
        stop = threading.Event()
        seen: list[tuple[float, int]] = []

        def read(
            url: str = f"{private}/streams/v1/index.json",
            stop: threading.Event = stop,
            seen: list[tuple[float, int]] = seen,
        ) -> None:
            with web(front) as w:
                while not stop.is_set():
                    sent = time.monotonic()
                    seen.append((sent, w.get(url).status_code))

        readers = [threading.Thread(target=read) for _ in range(4)]
        for reader in readers:
            reader.start()
        time.sleep(0.3)
        operator_call(server, "POST", f"/api/v1/credentials/{credential_id}/revoke")
        answered = time.monotonic()
        time.sleep(0.3)
        stop.set()
        for reader in readers:
            reader.join(10)
        assert any(code == 200 for sent, code in seen if sent < answered)
        after = [code for sent, code in seen if sent > answered]
        assert after and set(after) == {403}, f"served after the revocation: {after.count(200)}"


def test_feeds_the_token_cli_creates_moves_and_revokes_apply_through_nginx(
    fronted: tuple[RunningServer, Front], tmp_path: Path
):
    """`icefloe token` on the server host writes what nginx checks, as the API does."""
    server, front = fronted
    state = server.server_settings.state_dir
    publish(server, new_image(), tmp=tmp_path, to=("testing",))
    made = icefloe(state, "create", "--name", "fleet", "--feed", "--channel", "testing")
    path = "/feeds/" + made.stdout.strip().split("/feeds/")[1]
    credential_id = next(
        c["id"] for c in operator_call(server, "GET", "/api/v1/credentials") if c["name"] == "fleet"
    )
    wait_written(server)
    root = server.server_settings.static_root
    before = feed_requests(server)
    with web(front) as w:
        url = f"{path}streams/v1/images.json"
        assert (
            w.get(url).content == (root / "testing-lxd/current/streams/v1/images.json").read_bytes()
        )
        assert feed_requests(server) == before, "nginx answered it itself"
        assert icefloe(state, "follow", str(credential_id), "--channel", "active").returncode == 0
        assert (
            w.get(url).content == (root / "active-lxd/current/streams/v1/images.json").read_bytes()
        )
        assert icefloe(state, "revoke", str(credential_id), "--feed").returncode == 0
        refused = w.get(url)
    assert refused.status_code == 403 and refused.json()["detail"] == REFUSED


def test_a_server_start_writes_every_usable_credential_and_drops_the_rest(tmp_path: Path):
    stray = "0" * 64
    with RunningServer(tmp_path) as server:
        files = server.services.edge.credentials
        (files / stray).write_bytes(b'{"tree": "active-lxd", "expires": null}')
        with Session(server.services.engine) as session:  # not through the API: no file
            req = CredentialCreate(name="direct", channel=Channel.testing)
            secret = issue_credential(session, req).feed_path.removeprefix("/feeds/")
        digest = hashlib.sha256(secret.encode()).hexdigest()
        assert not (files / digest).exists()
    with RunningServer(tmp_path) as server:
        assert json.loads((files / digest).read_bytes()) == {"tree": "testing-lxd", "expires": None}
        assert not (files / stray).exists(), "no credential has it"
        assert oct(files.stat().st_mode & 0o777) == "0o711", "nobody lists them"


def test_a_file_of_a_version_that_left_the_channel_still_comes_within_the_grace(
    fronted: tuple[RunningServer, Front], tmp_path: Path
):
    """A host whose cached index still lists it gets it, as from the public channel."""
    server, front = fronted
    image = new_image()
    serial, private, _ = in_testing(server, tmp_path, image)
    with web(front) as w:
        path = squashfs_path(w.get(f"{private}/streams/v1/images.json").content, serial)
        catalog = client(server, server.token)
        pass_all(catalog, image, serial)
        move(catalog, image, serial, "active")
        catalog.close()
        wait_written(server)
        assert serial not in listed(w.get(f"{private}/streams/v1/images.json").content)
        assert w.get(f"{private}/{path}").status_code == 200
