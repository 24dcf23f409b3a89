"""Revoke and restore, and holds, over real HTTPS: a revoked version leaves every feed, its
files are not served (no cached-index grace), the version before comes back, and a held
image's promotions are refused until it is released."""

import fcntl
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import orjson
import pytest

from clients.catalog import CatalogClient, CatalogRejected, ImageHeld
from core.catalog import TransitionRequest, VersionState
from core.spec import ImageSpec
from harness.publish import move, new_image, pass_all, publish
from harness.servers import RunningServer, client
from harness.waiting import wait_until

KEEP = 2


@pytest.fixture(scope="module")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The default hour of grace for files that left a channel (a revoked version's get
    none), and two active versions kept per image."""
    with RunningServer(tmp_path_factory.mktemp("revoke"), keep_active=KEEP) as server:
        yield server


@pytest.fixture(scope="module")
def publisher(image_server: RunningServer) -> Iterator[CatalogClient]:
    with closing(client(image_server, image_server.token)) as c:
        yield c


def active_serials(catalog: CatalogClient, image: ImageSpec) -> list[str]:
    return [v.serial for v in catalog.versions(state=VersionState.active, image=image.name)]


def feed_serials(http: httpx.Client, base: str) -> set[str]:
    """Every serial the feed at `base` lists, of any image."""
    products = http.get(f"{base}/streams/v1/images.json").json()["products"]
    return {s for p in products.values() for s in p["versions"]}


def files_of(catalog: CatalogClient, image: ImageSpec, serial: str) -> list[str]:
    return [f.sha256 for a in catalog.version(image.name, serial).arches for f in a.files]


def promoted(catalog: CatalogClient, image: ImageSpec, tmp: Path, n: int) -> list[str]:
    """`n` versions of `image` promoted in turn, each passing every check: their serials."""
    return [
        publish(catalog, image, tmp=tmp / str(i), to=("testing", "active")).serial for i in range(n)
    ]


def test_a_revoked_version_leaves_every_feed_at_once_and_the_one_before_comes_back(
    image_server, publisher, operator, anonymous, tmp_path
):
    image = new_image(arches=["x86_64"])
    old, kept, bad = promoted(publisher, image, tmp_path, KEEP + 1)
    assert active_serials(publisher, image) == [kept, bad]  # `old` retired by retention
    cred = operator._http.post("/api/v1/credentials", json={"name": "revoke"}).json()
    private = cred["feed_path"]
    for base in ("/channels/active", private):
        assert bad in feed_serials(anonymous, base)

    done = operator.revoke(image.name, bad, "CVE-2026-0001 in its openssl")
    assert done.revoked.state == VersionState.revoked
    assert done.restored is not None and done.restored.serial == old
    assert active_serials(publisher, image) == [old, kept]
    static = image_server.server_settings.static_root
    tree = orjson.loads((static / "active" / "current" / "streams/v1/images.json").read_bytes())
    tree_serials = {s for p in tree["products"].values() for s in p["versions"]}
    for seen in (
        feed_serials(anonymous, "/channels/active"),
        feed_serials(anonymous, private),
        tree_serials,
    ):
        assert bad not in seen and {old, kept} <= seen
    # No grace for its files, though an hour is given to a version that merely left.
    move(publisher, image, kept, "inactive")
    for sha in files_of(publisher, image, bad):
        for base in ("/channels/active", private):
            assert anonymous.get(f"{base}/files/{sha}").status_code == 404
        assert not (static / "files" / "active" / sha).exists()
    for sha in files_of(publisher, image, kept):
        assert anonymous.get(f"/channels/active/files/{sha}").status_code == 200

    revoked, restored = operator.events(image.name, bad)[-1], operator.events(image.name, old)[-1]
    assert (revoked.from_state, revoked.to_state, revoked.actor) == (
        "active",
        "revoked",
        "ops-alice",
    )
    assert revoked.reason == "CVE-2026-0001 in its openssl"
    assert (restored.from_state, restored.to_state) == ("inactive", "active")
    assert restored.reason == f"restored: {bad} was revoked" and restored.actor == "ops-alice"


def test_restore_takes_the_newest_earlier_version_that_passed_every_check_and_has_its_files(
    image_server, publisher, operator, tmp_path
):
    image = new_image(arches=["x86_64"])
    good, gone, forced, revoked_before, a, b = (
        publish(publisher, image, tmp=tmp_path / str(i), to=("testing",)).serial for i in range(6)
    )
    for serial in (good, gone, revoked_before, a, b):
        pass_all(publisher, image, serial)
    force = TransitionRequest(to="active", reason="hotfix", force=True)
    for serial in (good, gone, forced, revoked_before, a, b):
        operator.transition(image.name, serial, force)
    operator.revoke(image.name, revoked_before, "bad")  # restores nothing: a and b came later
    image_server.services.store.path(files_of(publisher, image, gone)[-1]).unlink()  # a real loss
    assert active_serials(publisher, image) == [a, b]

    done = operator.revoke(image.name, b, "bad too")
    # forced never passed its checks, revoked_before is revoked, gone lost a file: good is next.
    assert done.restored is not None and done.restored.serial == good
    assert active_serials(publisher, image) == [good, a]
    # Revoking a version that retention retired leaves enough active: nothing restored.
    c = publish(publisher, image, tmp=tmp_path / "c", to=("testing", "active")).serial
    assert operator.revoke(image.name, good, "bad as well").restored is None
    assert active_serials(publisher, image) == [a, c]


def test_revoking_an_inactive_version_restores_nothing(publisher, operator, tmp_path):
    """Taken out of active by hand, then revoked: it held no active slot, so the version
    before it stays inactive although fewer than the retention count are active."""
    image = new_image(arches=["x86_64"])
    older, kept, dropped = promoted(publisher, image, tmp_path, KEEP + 1)
    move(publisher, image, dropped, "inactive")
    assert operator.revoke(image.name, dropped, "bad").restored is None
    assert active_serials(publisher, image) == [kept]
    assert publisher.version(image.name, older).state == VersionState.inactive


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({}, 422, "Field required"),
        ({"reason": ""}, 422, "at least 1 character"),
        ({"reason": "   "}, 422, "should match pattern"),
        ({"reason": "x" * 501}, 422, "at most 500 characters"),
    ],
)
def test_a_revoke_needs_a_reason(publisher, operator, tmp_path, body, status, says):
    image = new_image(arches=["x86_64"])
    serial = publish(publisher, image, tmp=tmp_path, to=("testing", "active")).serial
    r = operator._http.post(f"/api/v1/images/{image.name}/versions/{serial}/revoke", json=body)
    assert r.status_code == status and says in r.text, r.text


def test_who_may_revoke_what(publisher, operator, tmp_path):
    image = new_image(arches=["x86_64"])
    serial = publish(publisher, image, tmp=tmp_path / "a", to=("testing", "active")).serial
    testing = publish(publisher, image, tmp=tmp_path / "t", to=("testing",)).serial
    with pytest.raises(CatalogRejected) as exc:
        publisher.revoke(image.name, serial, "not mine to take")
    assert exc.value.status_code == 403
    with pytest.raises(CatalogRejected) as exc:
        operator.revoke(image.name, "20260101-0000", "no such")
    assert exc.value.status_code == 404
    with pytest.raises(CatalogRejected) as exc:
        operator.revoke(image.name, testing, "still testing")
    assert exc.value.status_code == 409
    assert "testing; only an active or inactive version can be revoked" in str(exc.value)
    operator.revoke(image.name, serial, "bad")
    with pytest.raises(CatalogRejected) as exc:
        operator.revoke(image.name, serial, "bad, twice")
    assert exc.value.status_code == 409 and "already revoked" in str(exc.value)
    with pytest.raises(CatalogRejected) as exc:  # the revoke route, not a bare transition
        operator.transition(image.name, testing, TransitionRequest(to="revoked", reason="x"))
    assert exc.value.status_code == 422 and "POST .../revoke" in str(exc.value)


def test_a_revoked_version_is_active_again_only_after_a_new_test_run_or_forced(
    publisher, operator, tmp_path
):
    image = new_image(arches=["x86_64"])
    serial = publish(publisher, image, tmp=tmp_path, to=("testing", "active")).serial
    operator.revoke(image.name, serial, "bad")
    promote = TransitionRequest(to="active", reason="it is fine")
    with pytest.raises(CatalogRejected) as exc:
        operator.transition(image.name, serial, promote)
    assert exc.value.status_code == 409 and "only a new test run" in str(exc.value)

    move(publisher, image, serial, "testing")
    with pytest.raises(CatalogRejected) as exc:  # the results from before the revoke are void
        publisher.transition(image.name, serial, promote)
    assert "not every required check passed" in str(exc.value)
    assert publisher.missing_checks(image.name, serial) == {"x86_64": image.required_checks}
    pass_all(publisher, image, serial)
    assert publisher.transition(image.name, serial, promote).state == VersionState.active

    operator.revoke(image.name, serial, "bad after all")
    force = TransitionRequest(to="active", reason="the CVE does not apply", force=True)
    assert operator.transition(image.name, serial, force).state == VersionState.active
    assert operator.events(image.name, serial)[-1].forced


def test_a_held_image_promotes_nothing_until_released(publisher, operator, anonymous, tmp_path):
    image = new_image(arches=["x86_64"])
    serial = publish(publisher, image, tmp=tmp_path, to=("testing",)).serial
    pass_all(publisher, image, serial)
    assert publisher.hold_of(image.name) is None
    with pytest.raises(CatalogRejected) as exc:
        publisher.hold(image.name, "not mine")
    assert exc.value.status_code == 403
    held = operator.hold(image.name, "incident 42: kernel panics on boot")
    assert (held.held_by, held.reason) == ("ops-alice", "incident 42: kernel panics on boot")
    with pytest.raises(CatalogRejected) as exc:
        operator.hold(image.name, "again")
    assert exc.value.status_code == 409 and "already held by ops-alice" in str(exc.value)

    for catalog, force in ((publisher, False), (operator, True)):
        with pytest.raises(ImageHeld) as exc:
            catalog.transition(
                image.name, serial, TransitionRequest(to="active", reason="x", force=force)
            )
        assert exc.value.status_code == 409
        assert "is held by ops-alice" in str(exc.value) and "incident 42" in str(exc.value)
    assert publisher.version(image.name, serial).state == VersionState.testing
    page = anonymous.get(f"/images/{image.name}").text
    assert "held</span> by ops-alice" in page and "incident 42" in page
    assert "held</span> by ops-alice" in anonymous.get("/").text

    assert operator.release(image.name).reason == held.reason
    assert publisher.hold_of(image.name) is None
    with pytest.raises(CatalogRejected) as exc:
        operator.release(image.name)
    assert exc.value.status_code == 409 and "is not held" in str(exc.value)
    move(publisher, image, serial, "active")
    with pytest.raises(CatalogRejected) as exc:
        operator.hold("no:such:image", "x")
    assert exc.value.status_code == 404


def test_pages_show_a_revoked_version(publisher, operator, anonymous, tmp_path):
    image = new_image(arches=["x86_64"])
    serial = publish(publisher, image, tmp=tmp_path, to=("testing", "active")).serial
    operator.revoke(image.name, serial, "broke DNS")
    page = anonymous.get(f"/images/{image.name}/versions/{serial}").text
    assert 'class="state state-revoked">revoked' in page and "broke DNS" in page


def test_revoke_answers_only_once_the_static_trees_show_it(
    image_server, publisher, operator, tmp_path
):
    """The trees' writer held up (its lock taken here) while the revoke commits: the answer
    waits for the trees, so nginx, which sends them without asking the server, never lists
    the version once the revoke answered."""
    image = new_image(arches=["x86_64"])
    serial = publish(publisher, image, tmp=tmp_path, to=("testing", "active")).serial
    trees = image_server.services.static
    shown_at_answer: list[int] = []

    def revoke() -> None:
        operator.revoke(image.name, serial, "bad")
        shown_at_answer.append(trees.shown())

    with (trees.root / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        thread = threading.Thread(target=revoke)
        thread.start()
        wait_until(lambda: publisher.version(image.name, serial).state == "revoked", "revoked", 30)
        thread.join(0.5)  # time for an answer that did not wait (a broken server) to come
    thread.join(30)
    revoked = operator.events(image.name, serial)[-1]
    assert revoked.to_state == "revoked"
    assert len(shown_at_answer) == 1 and shown_at_answer[0] >= revoked.id
