"""Requests that race each other, on SQLite and on Postgres: transitions of one version,
publishes of one serial, garbage collection against a publish. Each race is repeated a
bounded number of trials; in a trial every request goes out at once from its own
connection, released by a barrier. Whatever order the server picks, the catalog must
stay one that a sequence of single requests could have made."""

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from threading import Barrier
from typing import Any

import httpx
import pytest

from clients.catalog import CatalogClient
from core.catalog import ImageCheckView, VersionState
from core.spec import ImageSpec
from harness.publish import (
    OLD_MANIFEST,
    move,
    new_image,
    next_serial,
    pass_all,
    publish,
    upload,
)
from harness.servers import RunningServer, client, http, token
from tests.support import postgres_database

pytestmark = pytest.mark.slow  # repeated trials of each race

TRIALS = 10


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[RunningServer]:
    """One server per database; every test uses images of its own."""
    with ExitStack() as stack:
        settings: dict[str, Any] = {}
        if request.param == "postgres":
            settings["database_url"] = stack.enter_context(postgres_database("icefloe_races"))
        yield stack.enter_context(RunningServer(tmp_path_factory.mktemp(request.param), **settings))


@pytest.fixture(scope="module")
def publisher(server: RunningServer) -> Iterator[CatalogClient]:
    c = client(server, server.token)
    yield c
    c.close()


@pytest.fixture(scope="module")
def operator(server: RunningServer) -> str:
    return token(server, "operator", "ops-races")


Call = tuple[str, str, str, Any]  # method, path, token, JSON body


def race(server: RunningServer, calls: list[Call]) -> list[httpx.Response]:
    """Send every call at once, each on a connection opened before the barrier."""
    barrier = Barrier(len(calls))

    def send(call: Call) -> httpx.Response:
        method, path, secret, body = call
        with http(server) as c:
            c.headers["Authorization"] = f"Bearer {secret}"
            c.get("/healthz")  # connected and TLS done: only the call itself is left
            barrier.wait(timeout=30)
            if isinstance(body, bytes):  # a file upload
                return c.request(method, path, content=body)
            return c.request(method, path, json=body)

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(send, calls))


def uploaded(catalog: CatalogClient, tmp: Path, image: ImageSpec, serial: str) -> dict:
    """Upload new files for every arch of `image`; the publish request body for them."""
    return upload(catalog, image, serial, tmp=tmp).model_dump(mode="json")


def in_testing(catalog: CatalogClient, tmp: Path, image: ImageSpec) -> str:
    """A new version of `image` in testing with every required check passed: its serial."""
    serial = publish(catalog, image, tmp=tmp, to=("testing",)).serial
    pass_all(catalog, image, serial)
    return serial


def replays(catalog: CatalogClient, image: ImageSpec, serial: str) -> list[str]:
    """The version's states as its events tell them; asserts each event starts where the
    previous one ended and the last one ends in the version's state."""
    states: list[str] = []
    for event in catalog.events(image.name, serial):
        assert event.from_state == (states[-1] if states else None), (serial, states, event)
        states.append(event.to_state)
    assert states[-1] == catalog.version(image.name, serial).state
    return states


def transitions_path(image: ImageSpec, serial: str) -> str:
    return f"/api/v1/images/{image.name}/versions/{serial}/transitions"


def test_two_promotions_of_one_version_exactly_one_wins(server, publisher, tmp_path):
    image = new_image(arches=["x86_64"])
    promote = {"to": "active", "reason": "race"}
    for trial in range(TRIALS):
        serial = in_testing(publisher, tmp_path / str(trial), image)
        path = transitions_path(image, serial)
        answers = race(server, [("POST", path, server.token, promote)] * 2)
        codes = sorted(r.status_code for r in answers)
        assert codes == [200, 409], f"trial {trial}: {[r.text for r in answers]}"
        lost = next(r for r in answers if r.status_code == 409)
        assert "is active" in lost.json()["detail"]
        assert replays(publisher, image, serial) == ["created", "testing", "active"]


def test_a_promotion_racing_a_cancel_exactly_one_wins_and_is_told_the_truth(
    server, publisher, tmp_path
):
    """The cancel is sent as the pipeline's retire activity sends it: only from testing."""
    image = new_image(arches=["x86_64"])
    promote = {"to": "active", "reason": "every check passed"}
    cancel = {"to": "inactive", "from_state": "testing", "reason": "pipeline cancelled"}
    for trial in range(TRIALS):
        serial = in_testing(publisher, tmp_path / str(trial), image)
        path = transitions_path(image, serial)
        answers = race(
            server, [("POST", path, server.token, promote), ("POST", path, server.token, cancel)]
        )
        won = [r for r in answers if r.status_code == 200]
        lost = [r for r in answers if r.status_code != 200]
        assert len(won) == 1 and [r.status_code for r in lost] == [409], (
            f"trial {trial}: {[r.text for r in answers]}"
        )
        final = publisher.version(image.name, serial).state
        assert won[0].json()["state"] == final
        assert f"is {final}" in lost[0].json()["detail"]
        assert replays(publisher, image, serial) == ["created", "testing", final]


def test_concurrent_promotions_of_one_image_keep_retention(server, publisher, tmp_path):
    """Five versions promoted at once: the newest `keep_active` stay active, the rest go
    inactive, each exactly once."""
    keep = server.server_settings.keep_active
    promote = {"to": "active", "reason": "race"}
    for trial in range(TRIALS // 2):
        image = new_image(arches=["x86_64"])
        serials = [in_testing(publisher, tmp_path / f"{trial}-{n}", image) for n in range(5)]
        answers = race(
            server, [("POST", transitions_path(image, s), server.token, promote) for s in serials]
        )
        assert [r.status_code for r in answers] == [200] * 5, [r.text for r in answers]
        active = {v.serial for v in publisher.versions(state=VersionState.active, image=image.name)}
        assert active == set(serials[-keep:]), f"trial {trial}"
        for serial in serials:
            states = replays(publisher, image, serial)
            assert states[:3] == ["created", "testing", "active"]
            assert states[3:] == ([] if serial in active else ["inactive"]), (serial, states)


def without_deltas(version: dict) -> dict:
    """A version's view but its arches' delta states, which the server settles in the
    background between two answers."""
    arches = [{k: v for k, v in a.items() if not k.startswith("delta")} for a in version["arches"]]
    return version | {"arches": arches}


def test_concurrent_publishes_of_one_serial_answer_like_sequential_ones(
    server, publisher, tmp_path
):
    """Six publish the same files, two other files, all for one serial: one 201, the same
    files again 200 with the same version, the other files 409."""
    image = new_image(arches=["x86_64"])
    for trial in range(TRIALS):
        serial = next_serial()
        same = uploaded(publisher, tmp_path / f"{trial}-a", image, serial)
        other = uploaded(publisher, tmp_path / f"{trial}-b", image, serial)
        bodies = [same] * 6 + [other] * 2
        answers = race(server, [("POST", "/api/v1/versions", server.token, b) for b in bodies])
        codes = [r.status_code for r in answers]
        assert codes.count(201) == 1, f"trial {trial}: {codes} {[r.text for r in answers]}"
        first = codes.index(201)
        for body, answer in zip(bodies, answers, strict=True):
            if answer is answers[first]:
                continue
            if body is bodies[first]:
                assert answer.status_code == 200
                assert without_deltas(answer.json()) == without_deltas(answers[first].json())
            else:
                assert answer.status_code == 409, answer.text
                assert "exists with other files" in answer.json()["detail"]


def test_racing_publishes_of_an_unchanged_version_are_all_refused(server, publisher, tmp_path):
    """Four publishes at once, two serials, each with the definition and packages of the
    active version: every one refused as unchanged since it, none created."""
    image = new_image(arches=["x86_64"])
    active = publish(
        publisher, image, tmp=tmp_path / "active", manifest=OLD_MANIFEST, to=("testing", "active")
    ).serial
    for trial in range(TRIALS):
        bodies = [
            upload(
                publisher,
                image,
                next_serial(),
                tmp=tmp_path / f"{trial}-{n}",
                manifest=OLD_MANIFEST,
            ).model_dump(mode="json")
            for n in range(2)
        ] * 2
        answers = race(server, [("POST", "/api/v1/versions", server.token, b) for b in bodies])
        assert [r.status_code for r in answers] == [409] * 4, [r.text for r in answers]
        assert {r.json()["unchanged_since"] for r in answers} == {active}
    assert [v.serial for v in publisher.versions(image=image.name)] == [active]


def test_a_publish_racing_the_promotion_of_its_equal_answers_like_a_sequence(
    server, publisher, tmp_path
):
    """A version in testing is promoted while a new one with its packages is published:
    published first, the new one is created; promoted first, it is refused as unchanged
    since the promoted one. Never both, never an error."""
    image = new_image(arches=["x86_64"])
    promote = {"to": "active", "reason": "race"}
    outcomes = set()
    for trial in range(TRIALS):
        manifest = f"pkg\t1.{trial}\n".encode()
        tmp = tmp_path / str(trial)
        serial = publish(publisher, image, tmp=tmp / "s", manifest=manifest, to=("testing",)).serial
        pass_all(publisher, image, serial)
        equal = upload(publisher, image, next_serial(), tmp=tmp / "e", manifest=manifest)
        moved, published = race(
            server,
            [
                ("POST", transitions_path(image, serial), server.token, promote),
                ("POST", "/api/v1/versions", server.token, equal.model_dump(mode="json")),
            ],
        )
        assert moved.status_code == 200, moved.text
        assert published.status_code in (201, 409), published.text
        created = equal.serial in {v.serial for v in publisher.versions(image=image.name)}
        assert created == (published.status_code == 201)
        if not created:
            assert published.json()["unchanged_since"] == serial
        outcomes.add(published.status_code)
    print(f"publish answers seen over {TRIALS} trials: {sorted(outcomes)}")


def test_fifty_checks_of_one_image_at_once_leave_the_newest(server, publisher, tmp_path):
    """One row per image whatever the concurrency: every check answers, the last one stays."""
    image = new_image(arches=["x86_64"])
    serial = publish(publisher, image, tmp=tmp_path, to=("testing", "active")).serial
    path = f"/api/v1/images/{image.name}/check"
    for trial in range(2):
        calls = [
            ("PUT", path, server.token, {"unchanged_since": serial, "workflow_id": f"{trial}-{n}"})
            for n in range(50)
        ]
        answers = race(server, calls)
        assert [r.status_code for r in answers] == [200] * 50, {r.text for r in answers}
        checks = [ImageCheckView.model_validate_json(r.content) for r in answers]
        newest = max(c.checked_at for c in checks)
        stored = publisher.image_check(image.name)
        assert stored is not None and stored.checked_at == newest
        assert stored in [c for c in checks if c.checked_at == newest]


def test_gc_racing_a_publish_never_deletes_the_files_it_lists(
    server, publisher, operator, tmp_path
):
    """With no grace, gc may take the files before the publish (the publish is refused:
    they are not uploaded) or after (the version lists them, they stay): never both.
    Which one wins is the server's to pick; the test below makes each happen."""
    image = new_image(arches=["x86_64"])
    published = 0
    with http(server) as anonymous:
        for trial in range(15):
            serial = next_serial()
            body = uploaded(publisher, tmp_path / str(trial), image, serial)
            pub, gc = race(
                server,
                [
                    ("POST", "/api/v1/versions", server.token, body),
                    ("POST", "/api/v1/gc", operator, {"grace_s": 0}),
                ],
            )
            assert gc.status_code == 200, gc.text
            if pub.status_code != 201:
                assert pub.status_code == 409 and "not uploaded" in pub.json()["detail"], pub.text
                continue
            published += 1
            move(publisher, image, serial, "testing")
            for file in body["arches"][0]["files"]:
                r = anonymous.get(f"/channels/testing/files/{file['sha256']}")
                assert r.status_code == 200, f"trial {trial}: {file['name']} of a listed version"
    print(f"{published} of 15 publishes won over gc")


@pytest.mark.parametrize("first", ["gc", "publish"])
def test_gc_and_a_publish_each_way_round(server, publisher, operator, tmp_path, first):
    """Both orders the race above may take, made to happen: gc answered before the publish
    is sent takes the unlisted files and the publish is refused; a publish answered first
    lists them, gc keeps them and the testing channel serves them."""
    image = new_image(arches=["x86_64"])
    serial = next_serial()
    body = uploaded(publisher, tmp_path, image, serial)
    files = {f["sha256"]: f["name"] for f in body["arches"][0]["files"]}
    with http(server) as c:
        c.headers["Authorization"] = f"Bearer {operator}"
        if first == "gc":
            collected = c.post("/api/v1/gc", json={"grace_s": 0}).json()["files"]
            assert files.keys() <= set(collected)
        publish = c.post("/api/v1/versions", json=body)
        if first == "gc":
            sha, name = next(iter(files.items()))  # the metadata: checked first
            assert publish.status_code == 409
            assert publish.json()["detail"] == f"file {name} ({sha}) is not uploaded yet"
        else:
            assert publish.status_code == 201, publish.text
            collected = c.post("/api/v1/gc", json={"grace_s": 0}).json()["files"]
            assert not files.keys() & set(collected)
            move(publisher, image, serial, "testing")
            for sha in files:
                assert c.get(f"/channels/testing/files/{sha}").status_code == 200


def test_a_re_upload_racing_gc_is_never_a_server_error(server, publisher, operator):
    """An upload of content the server already has (no version lists it) while gc deletes
    it: the upload either refreshed it first (gc keeps it) or stores it anew."""
    for trial in range(15):
        data = os.urandom(2048)
        path = f"/api/v1/files/{hashlib.sha256(data).hexdigest()}?size={len(data)}"
        assert publisher._http.put(path, content=data).status_code == 201
        upload, gc = race(
            server,
            [("PUT", path, server.token, data), ("POST", "/api/v1/gc", operator, {"grace_s": 0})],
        )
        assert gc.status_code == 200, gc.text
        assert upload.status_code == 201, f"trial {trial}: {upload.status_code} {upload.text}"


def test_a_file_stays_served_by_a_channel_its_version_just_left(
    server, publisher, operator, tmp_path
):
    """LXD caches a channel's index for up to an hour: a host that read `testing` before a
    promotion, or `active` before retention took a version out, still fetches its files."""
    keep = server.server_settings.keep_active
    image = new_image(arches=["x86_64"])
    serials = [in_testing(publisher, tmp_path / str(n), image) for n in range(keep + 2)]
    first, *newer, untested = serials
    files = [f.sha256 for f in publisher.version(image.name, first).arches[0].files]
    ops = client(server, operator)
    with http(server) as anonymous:

        def served(channel: str, version_files: list[str]) -> list[int]:
            return [
                anonymous.get(f"/channels/{channel}/files/{f}").status_code for f in version_files
            ]

        move(publisher, image, first, "active")
        assert served("testing", files) == [200, 200], "a promotion took it out of testing"
        for serial in newer:
            move(publisher, image, serial, "active")
        assert publisher.version(image.name, first).state == "inactive"
        assert f"{image.name} {first}" not in ops.gc(grace_s=0).versions
        assert served("active", files) == [200, 200], "retention took it out of active"
        assert served("testing", files) == [200, 200]

        never = [f.sha256 for f in publisher.version(image.name, untested).arches[0].files]
        assert served("active", never) == [404, 404], "never in active, never served there"
    ops.close()


def test_the_channel_file_grace_is_a_setting(tmp_path):
    with RunningServer(tmp_path, channel_file_grace_s=0) as server, http(server) as anonymous:
        publisher = client(server, server.token)
        image = new_image(arches=["x86_64"])
        serial = in_testing(publisher, tmp_path / "files", image)
        move(publisher, image, serial, "active")
        for file in publisher.version(image.name, serial).arches[0].files:
            assert anonymous.get(f"/channels/testing/files/{file.sha256}").status_code == 404
            assert anonymous.get(f"/channels/active/files/{file.sha256}").status_code == 200
        move(publisher, image, serial, "inactive")
        ops = client(server, token(server, "operator"))
        assert ops.gc(grace_s=0).versions == [f"{image.name} {serial}"]
        for c in (publisher, ops):
            c.close()


def revoke_path(image: ImageSpec, serial: str) -> str:
    return f"/api/v1/images/{image.name}/versions/{serial}/revoke"


def test_two_revokes_of_one_version_give_one_revocation_and_a_clear_409(
    server, publisher, operator, tmp_path
):
    image = new_image(arches=["x86_64"])
    for trial in range(TRIALS):
        serial = in_testing(publisher, tmp_path / str(trial), image)
        move(publisher, image, serial, "active")
        answers = race(
            server, [("POST", revoke_path(image, serial), operator, {"reason": "bad"})] * 2
        )
        assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
        lost = next(r for r in answers if r.status_code == 409)
        assert lost.json()["detail"] == f"{image.name} {serial} is already revoked"
        assert replays(publisher, image, serial)[-2:] == ["active", "revoked"]


def test_a_revoke_racing_a_promotion_ends_as_either_order_would(
    server, publisher, operator, tmp_path
):
    """The newest of `keep` active versions is revoked while a newer one is promoted: in
    either order the newer one and the `keep - 1` before the revoked one end active (one
    of them restored), the one older than all of them inactive, and each answer 200."""
    keep = server.server_settings.keep_active
    promote = {"to": "active", "reason": "every check passed"}
    for trial in range(TRIALS // 2):
        image = new_image(arches=["x86_64"])
        tmp = tmp_path / str(trial)
        oldest, *actives = [in_testing(publisher, tmp / str(n), image) for n in range(keep + 1)]
        for serial in (oldest, *actives):
            move(publisher, image, serial, "active")
        newer = in_testing(publisher, tmp / "newer", image)
        revoked = actives[-1]
        answers = race(
            server,
            [
                ("POST", revoke_path(image, revoked), operator, {"reason": "bad"}),
                ("POST", transitions_path(image, newer), server.token, promote),
            ],
        )
        assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
        active = {v.serial for v in publisher.versions(state=VersionState.active, image=image.name)}
        assert active == {*actives[:-1], newer}, f"trial {trial}"
        assert publisher.version(image.name, revoked).state == "revoked"
        assert publisher.version(image.name, oldest).state == "inactive"
        for serial in (oldest, *actives, newer):
            replays(publisher, image, serial)
