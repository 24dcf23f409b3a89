"""The version life cycle over real HTTPS: events, forced promotion, listing for the
pipeline, abandoning silent assessments, and garbage collection of inactive files."""

import os
from pathlib import Path

import pytest

from clients.catalog import CatalogRejected
from core.catalog import (
    AssessmentReport,
    AssessmentState,
    BuiltFile,
    FileType,
    TransitionRequest,
)
from harness.publish import move, new_image, next_serial, pass_all, publish, stored
from harness.servers import RunningServer, client, token


def test_every_transition_is_an_event_and_the_version_names_its_workflow(catalog, tmp_path):
    image, serial = new_image(), next_serial()
    publish(catalog, image, serial, tmp=tmp_path)
    catalog.transition(
        image.name, serial, TransitionRequest(to="testing", reason="test it", workflow_id="wf-1")
    )
    move(catalog, image, serial, "inactive")
    events = catalog.events(image.name, serial)
    assert [(e.from_state, e.to_state) for e in events] == [
        (None, "created"),
        ("created", "testing"),
        ("testing", "inactive"),
    ]
    assert events[1].reason == "test it" and events[1].actor == "tests" and not events[1].forced
    assert catalog.version(image.name, serial).workflow_id == "wf-1"


def test_forced_promotion_needs_an_operator_and_is_recorded(catalog, operator, tmp_path):
    image, serial = new_image(), next_serial()
    publish(catalog, image, serial, tmp=tmp_path)
    move(catalog, image, serial, "testing")
    force = TransitionRequest(to="active", reason="CVE hotfix, tests flaky", force=True)
    with pytest.raises(CatalogRejected) as exc:
        catalog.transition(image.name, serial, force)
    assert exc.value.status_code == 403 and "operator" in str(exc.value)

    assert operator.transition(image.name, serial, force).state == "active"
    last = operator.events(image.name, serial)[-1]
    assert last.forced and last.actor == "ops-alice" and last.reason == force.reason


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"to": "testing", "reason": "x", "force": True}, "force only applies to a promotion"),
        ({"to": "active", "reason": "", "force": True}, "at least 1 character"),
        ({"to": "active", "reason": "  ", "force": True}, "should match pattern"),
        ({"to": "active", "force": True}, "Field required"),
    ],
)
def test_bad_forced_transitions_are_422(operator, tmp_path, body, message):
    r = operator._http.post(f"/api/v1/images/x:y:z/versions/{next_serial()}/transitions", json=body)
    assert r.status_code == 422 and message in r.text


def test_versions_list_by_state_and_image(catalog, tmp_path):
    image, one, two = new_image(), next_serial(), next_serial()
    publish(catalog, image, one, tmp=tmp_path)
    publish(catalog, image, two, tmp=tmp_path)
    catalog.transition(
        image.name, two, TransitionRequest(to="testing", reason="t", workflow_id="wf-two")
    )
    testing = catalog.versions(state="testing", image=image.name)
    assert [(v.serial, v.workflow_id) for v in testing] == [(two, "wf-two")]
    assert testing[0].state_changed_at >= testing[0].created_at
    assert [v.serial for v in catalog.versions(image=image.name)] == [one, two]
    assert all(v.state == "created" for v in catalog.versions(state="created"))
    r = catalog._http.get("/api/v1/versions", params={"state": "gone"})
    assert r.status_code == 422
    r = catalog._http.get("/api/v1/versions", params={"image": "no colons"})
    assert r.status_code == 422


def test_abandon_running_fails_only_silent_running_results(catalog, tmp_path):
    image, serial = new_image(), next_serial()
    publish(catalog, image, serial, tmp=tmp_path)
    running = AssessmentReport(arch="x86_64", check="boots", host="h1", state="running")
    catalog.record(image.name, serial, running)
    catalog.record(image.name, serial, running.model_copy(update={"arch": "i686"}))
    catalog.record(
        image.name,
        serial,
        running.model_copy(update={"host": "h2", "state": AssessmentState.passed}),
    )
    assert catalog.abandon_running(image.name, serial, older_than_s=3600) == 0
    assert catalog.abandon_running(image.name, serial, older_than_s=0) == 2
    results = {(a.arch, a.host): a for a in catalog.version(image.name, serial).assessments}
    assert results["x86_64", "h1"].state == "failed"
    assert results["x86_64", "h1"].evidence == "abandoned: no result within 0 s"
    assert results["x86_64", "h2"].state == "passed"
    assert catalog.abandon_running(image.name, serial, older_than_s=0) == 0
    r = catalog._http.post(
        f"/api/v1/images/{image.name}/versions/{serial}/assessments/abandon-running",
        json={"older_than_s": -1},
    )
    assert r.status_code == 422


def _written(tmp_path: Path, name: str, ftype: FileType, data: bytes) -> tuple[BuiltFile, Path]:
    (tmp_path / name).write_bytes(data)
    return stored(tmp_path / name, ftype)


def test_gc_deletes_inactive_files_but_keeps_shared_ones(tmp_path):
    """Own server: collecting with grace 0 would take other tests' files."""
    with RunningServer(tmp_path / "server", channel_file_grace_s=0) as server:
        publisher = client(server, server.token)
        operator = client(server, token(server, "operator"))
        store = server.services.store
        image = new_image(arches=["x86_64"])
        rootfs = _written(tmp_path, "rootfs", FileType.squashfs, os.urandom(2048))
        serials = []
        for _ in range(2):  # two versions sharing one rootfs
            meta = _written(tmp_path, "meta", FileType.metadata, os.urandom(512))
            serials.append(publish(publisher, image, files={"x86_64": [meta, rootfs]}).serial)
        old, new = serials
        move(publisher, image, old, "testing", "inactive")
        orphan, path = _written(tmp_path, "orphan", FileType.squashfs, os.urandom(100))
        publisher.upload(path, orphan)
        rootfs_file = rootfs[0]

        assert operator.gc(grace_s=3600).versions == []
        result = operator.gc(grace_s=0)
        old_meta = publisher.version(image.name, old).arches[0].files[0].sha256
        assert result.versions == [f"{image.name} {old}"]
        assert sorted(result.files) == sorted([old_meta, orphan.sha256])
        assert result.bytes == 512 + 100
        assert not store.exists(old_meta) and not store.exists(orphan.sha256)
        assert store.exists(rootfs_file.sha256), "the newer version still lists the shared rootfs"
        assert publisher.version(image.name, old).files_deleted_at is not None

        with pytest.raises(CatalogRejected) as exc:
            move(publisher, image, old, "testing")
        assert exc.value.status_code == 409 and "garbage-collected" in str(exc.value)
        assert operator.gc(grace_s=0).files == []

        move(publisher, image, new, "testing")
        pass_all(publisher, image, new)
        move(publisher, image, new, "active")
        feed = publisher._http.get("/channels/active/streams/v1/images.json").json()
        product = feed["products"][f"{image.os}:one:amd64:default"]
        assert list(product["versions"]) == [new]
        r = publisher._http.get(f"/channels/active/files/{rootfs_file.sha256}")
        assert r.status_code == 200 and len(r.content) == 2048
        for c in (publisher, operator):
            c.close()


def test_a_change_to_the_channel_gives_the_feed_a_new_etag(catalog, tmp_path):
    url = "/channels/testing/streams/v1/images.json"
    before = catalog._http.get(url).headers["etag"]
    image, serial = new_image(), next_serial()
    publish(catalog, image, serial, tmp=tmp_path)
    assert catalog._http.get(url, headers={"If-None-Match": before}).status_code == 304
    move(catalog, image, serial, "testing")
    r = catalog._http.get(url, headers={"If-None-Match": before})
    assert r.status_code == 200 and r.headers["etag"] != before
    assert serial in r.json()["products"][f"{image.os}:one:amd64:default"]["versions"]


def test_the_same_files_under_another_serial_are_refused(catalog, tmp_path):
    """One fingerprint, one version: LXD cannot look an image up that a feed lists twice."""
    image = new_image(arches=["x86_64"])
    req = publish(catalog, image, next_serial(), tmp=tmp_path).request
    with pytest.raises(CatalogRejected) as exc:
        catalog.publish(req.model_copy(update={"serial": next_serial()}))
    assert exc.value.status_code == 409 and "already published" in str(exc.value)


def test_gc_collects_a_revoked_versions_files_too(tmp_path):
    """A revoked version is served by no channel; past the grace its files go like an
    inactive one's (else every revocation would keep its image's files forever)."""
    with RunningServer(tmp_path / "server", channel_file_grace_s=3600) as server:
        publisher = client(server, server.token)
        operator = client(server, token(server, "operator"))
        image = new_image(arches=["x86_64"])
        serial = publish(publisher, image, tmp=tmp_path, to=("testing", "active")).serial
        operator.revoke(image.name, serial, "bad in production")
        assert operator.gc(grace_s=3600).versions == []
        assert operator.gc(grace_s=0).versions == [f"{image.name} {serial}"]
        assert publisher.version(image.name, serial).files_deleted_at is not None
