"""Signed provenance over real HTTPS: a build statement at publish and a test statement at
each promotion, DSSE envelopes that in-toto's and securesystemslib's own verification accept
with the key /api/v1/keys publishes; rotation; a server whose key file is gone refuses to
sign; the private key shows in no answer and no log."""

import base64
import hashlib
import json
import logging
from collections.abc import Iterator
from copy import deepcopy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from in_toto.models.metadata import Envelope as InTotoEnvelope
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey
from sqlmodel import Session, select

from clients.catalog import CatalogClient
from core.catalog import AssessmentReport, BuildRecord, TransitionRequest
from core.inputs import ArchInputs, VersionInputs, spec_digest
from core.provenance import icefloe_version
from core.sbom import SbomFormat
from harness.publish import (
    NEW_MANIFEST,
    move,
    new_image,
    next_serial,
    pass_all,
    publish,
    upload,
)
from harness.servers import RunningServer, client, http, token
from server_api.models import Blob
from tests.support import postgres_database, rotate_keys

BUILD = "https://slsa.dev/provenance/v1"
TEST = "https://icefloe.dev/attestations/test-results/v1"


def keys(anonymous: httpx.Client) -> dict[str, SSlibKey]:
    answer = anonymous.get("/api/v1/keys")
    assert answer.status_code == 200, answer.text
    return {
        k["keyid"]: SSlibKey.from_dict(k["keyid"], k["key"])
        for k in answer.json()["keys"]
        if k["purpose"] == "provenance"
    }


def attestations(anonymous: httpx.Client, image: str, serial: str) -> dict:
    answer = anonymous.get(f"/api/v1/images/{image}/versions/{serial}/attestations")
    assert answer.status_code == 200, answer.text
    return answer.json()


def statement(envelope: dict, key: SSlibKey) -> dict:
    """The statement, once the envelope verified with `key` by in-toto and securesystemslib
    (whose `from_dict` takes the signatures out of the dict it reads: each gets a copy)."""
    Envelope.from_dict(deepcopy(envelope)).verify([key], 1)
    as_in_toto = key.to_dict() | {"keyid": key.keyid}
    InTotoEnvelope.from_dict(deepcopy(envelope)).verify_signature(as_in_toto)
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    said = json.loads(base64.b64decode(envelope["payload"]))
    assert said["_type"] == "https://in-toto.io/Statement/v1"
    return said


def active_key(anonymous: httpx.Client) -> SSlibKey:
    listed = anonymous.get("/api/v1/keys").json()["keys"]
    (active,) = [k for k in listed if k["purpose"] == "provenance" and k["retired_at"] is None]
    return SSlibKey.from_dict(active["keyid"], active["key"])


def feed_subjects(anonymous: httpx.Client, image: str, serial: str) -> dict[str, str]:
    """name -> sha256 of the version's files and fingerprints as the testing feed lists them."""
    products = anonymous.get("/channels/testing/streams/v1/images.json").json()["products"]
    out = {}
    for product in products.values():
        if (
            f"{product['os']}:{product['release']}" not in image
            or serial not in product["versions"]
        ):
            continue
        arch, items = product["arch"], product["versions"][serial]["items"]
        names = {"lxd.tar.xz": "lxd.tar.xz", "squashfs": "rootfs.squashfs"}
        names["manifest"] = "rootfs.manifest"
        names |= {fmt.ftype: fmt.ftype for fmt in SbomFormat}
        for item in items.values():
            if item["ftype"] in names:
                out[f"{arch}/{names[item['ftype']]}"] = item["sha256"]
            if "combined_squashfs_sha256" in item:
                out[f"{arch}/lxd-fingerprint"] = item["combined_squashfs_sha256"]
    return out


@pytest.fixture(scope="module")
def signed(catalog: CatalogClient, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(image, serial): a version with a manifest on two arches, in testing."""
    image, serial = new_image(), next_serial()
    publish(catalog, image, serial, tmp=tmp_path_factory.mktemp("prov"), manifest=NEW_MANIFEST)
    move(catalog, image, serial, "testing")
    return image, serial


def test_a_publish_signs_a_build_statement_of_the_served_files_and_fingerprints(
    signed: tuple, catalog: CatalogClient, anonymous: httpx.Client
):
    image, serial = signed
    answer = attestations(anonymous, image.name, serial)
    assert (answer["image"], answer["serial"], answer["state"]) == (image.name, serial, "testing")
    assert answer["revoked"] is None
    (build,) = answer["attestations"]
    assert build["kind"] == "build"
    said = statement(build["envelope"], active_key(anonymous))
    assert said["predicateType"] == BUILD
    subjects = {s["name"]: s["digest"]["sha256"] for s in said["subject"]}
    assert len(subjects) == len(said["subject"]) == 12, "5 files and a fingerprint per arch"
    assert subjects == feed_subjects(anonymous, image.name, serial)
    for fmt in SbomFormat:  # the documents the API serves are the ones signed for
        served = anonymous.get(
            f"/api/v1/images/{image.name}/versions/{serial}/sbom/x86_64", params={"format": fmt}
        )
        assert hashlib.sha256(served.content).hexdigest() == subjects[f"amd64/{fmt.ftype}"]
    view = catalog.version(image.name, serial)
    fingerprints = {a.fingerprint for a in view.arches}
    assert {subjects["amd64/lxd-fingerprint"], subjects["i386/lxd-fingerprint"]} == fingerprints

    predicate = said["predicate"]
    params = predicate["buildDefinition"]["externalParameters"]
    assert (params["image"], params["serial"]) == (image.name, serial)
    assert params["definition"] == json.loads(image.model_dump_json())
    assert params["definition_sha256"] == spec_digest(image)
    deps = {d["name"]: d for d in predicate["buildDefinition"]["resolvedDependencies"]}
    assert deps["amd64/manifest"]["digest"]["sha256"] == subjects["amd64/rootfs.manifest"]
    builder = predicate["runDetails"]["builder"]
    assert builder["id"] == "https://icefloe.dev/builders/busybox"
    assert builder["version"]["busybox"].startswith("unknown"), "the harness reports no build"
    hosts = {b["name"]: b for b in predicate["runDetails"]["byproducts"]}
    assert hosts["amd64/build-host"]["annotations"]["unknown"]

    for fingerprint in fingerprints:
        by_fp = anonymous.get(f"/api/v1/attestations/{fingerprint}")
        assert by_fp.status_code == 200 and by_fp.json() == answer
        prefix = anonymous.get(f"/api/v1/attestations/{fingerprint[:12].upper()}")
        assert prefix.status_code == 200 and prefix.json() == answer


def test_a_flipped_byte_in_the_payload_or_the_signature_fails_verification(
    signed: tuple, anonymous: httpx.Client
):
    image, serial = signed
    envelope = attestations(anonymous, image.name, serial)["attestations"][0]["envelope"]
    key = active_key(anonymous)
    payload = bytearray(base64.b64decode(envelope["payload"]))
    payload[len(payload) // 2] ^= 1
    altered = envelope | {"payload": base64.b64encode(bytes(payload)).decode()}
    sig = envelope["signatures"][0]
    raw = bytearray(base64.b64decode(sig["sig"]))
    raw[0] ^= 1
    resigned = envelope | {"signatures": [sig | {"sig": base64.b64encode(bytes(raw)).decode()}]}
    for bad in (altered, resigned):
        with pytest.raises(VerificationError):
            Envelope.from_dict(deepcopy(bad)).verify([key], 1)


def test_promotions_add_a_test_statement_forced_or_not(
    catalog: CatalogClient,
    operator: CatalogClient,
    anonymous: httpx.Client,
    tmp_path: Path,
):
    image, gated, forced = new_image(), next_serial(), next_serial()
    publish(catalog, image, gated, tmp=tmp_path, to=("testing",))
    for arch, checks in catalog.missing_checks(image.name, gated).items():
        for check in checks:
            said = {"check": check, "host": "h", "server": "lxd 5.0.2", "evidence": "ok"}
            catalog.record(image.name, gated, AssessmentReport(arch=arch, state="passed", **said))
    move(catalog, image, gated, "active")
    publish(catalog, image, forced, tmp=tmp_path, to=("testing",))
    force = TransitionRequest(to="active", reason="ship it anyway", force=True)
    operator.transition(image.name, forced, force)
    key = active_key(anonymous)
    for serial, was_forced, actor in ((gated, False, "tests"), (forced, True, "ops-alice")):
        answer = attestations(anonymous, image.name, serial)
        assert [a["kind"] for a in answer["attestations"]] == ["build", "test"]
        build, test = (statement(a["envelope"], key) for a in answer["attestations"])
        assert test["subject"] == build["subject"]
        assert test["predicateType"] == TEST
        promotion = test["predicate"]["promotion"]
        assert (promotion["forced"], promotion["actor"]) == (was_forced, actor)
        results = test["predicate"]["results"]
        if was_forced:
            assert results == [], "forced past the gate with no result recorded"
            assert promotion["reason"] == "ship it anyway"
            continue
        assert {(r["arch"], r["check"]) for r in results} == {
            (arch, c) for arch in ("amd64", "i386") for c in image.required_checks
        }
        for r in results:
            assert (r["host"], r["instance_type"], r["state"], r["server"]) == (
                "h",
                "container",
                "passed",
                "lxd 5.0.2",
            )
            assert r["evidence_sha256"] == hashlib.sha256(b"ok").hexdigest()


def test_unknown_versions_and_fingerprints_are_404_a_malformed_one_422(
    signed: tuple, anonymous: httpx.Client
):
    image, _ = signed
    for path, says in (
        ("/api/v1/images/nope:nope:nope/versions/20260101/attestations", "no version"),
        (f"/api/v1/images/{image.name}/versions/19990101/attestations", "no version 19990101"),
        ("/api/v1/attestations/" + "0" * 64, "no version has an image whose fingerprint"),
    ):
        answer = anonymous.get(path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["detail"].startswith(says)
    for bad in ("xyz", "0" * 11, "g" * 64, "0" * 65):
        assert anonymous.get(f"/api/v1/attestations/{bad}").status_code == 422, bad


def key_file(server: RunningServer) -> Path:
    return server.server_settings.provenance_key_path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The server settings of a catalog in SQLite or in a fresh Postgres database."""
    if request.param == "sqlite":
        yield {}
    else:
        with postgres_database("icefloe_provenance") as url:
            yield {"database_url": url}


def test_a_rotation_adds_the_new_keys_signature_and_lists_the_old_key_retired(
    tmp_path: Path, database: dict[str, str]
):
    with RunningServer(tmp_path / "server", **database) as server, http(server) as anonymous:
        image = new_image()
        old = publish(server, image, tmp=tmp_path, to=("testing", "active"))
        (old_key,) = keys(anonymous).values()
        said = rotate_keys(server)
        new = publish(server, image, tmp=tmp_path, to=("testing",))
        listed = [
            k for k in anonymous.get("/api/v1/keys").json()["keys"] if k["purpose"] == "provenance"
        ]
        assert [(k["keyid"], k["retired_at"] is None) for k in listed] == [
            (old_key.keyid, False),
            (listed[1]["keyid"], True),
        ]
        new_key = keys(anonymous)[listed[1]["keyid"]]
        assert f"retired {old_key.keyid}; 2 envelopes now also signed by {new_key.keyid}" in said
        for a in attestations(anonymous, image.name, old.serial)["attestations"]:
            assert len(a["envelope"]["signatures"]) == 2
            assert statement(a["envelope"], old_key) == statement(a["envelope"], new_key)
        (build,) = attestations(anonymous, image.name, new.serial)["attestations"]
        statement(build["envelope"], new_key)
        with pytest.raises(VerificationError):  # a host pinning only the old key
            Envelope.from_dict(deepcopy(build["envelope"])).verify([old_key], 1)
        assert key_file(server).stat().st_mode & 0o777 == 0o600


def test_a_server_without_its_key_file_refuses_to_sign_and_makes_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    state = tmp_path / "server"
    image = new_image()
    with RunningServer(state) as server:
        before = publish(server, image, tmp=tmp_path, to=("testing",))
        pem = key_file(server).read_text()
    key_file(server).unlink()
    with RunningServer(state) as again, http(again) as anon:
        assert not key_file(again).exists(), "no new key was made"
        path = key_file(again)
        says = (
            f"the provenance key {path} is missing; nothing is published or promoted unsigned: "
            "restore the file or run `icefloe keys rotate` on the server host"
        )
        assert says in caplog.text, "said at start"
        with pytest.raises(httpx.HTTPStatusError) as refused:  # 5xx: a pipeline retries
            publish(again, image, tmp=tmp_path, manifest=NEW_MANIFEST)
        assert refused.value.response.status_code == 503
        assert refused.value.response.json() == {"detail": says}
        stored = {p.name for p in again.services.store.root.glob("??/*")}
        with Session(again.services.engine) as session:
            rows = set(session.exec(select(Blob.sha256)).all())
        assert stored == rows, "the refused publish stored no SBOM (nor any file without a row)"
        listed = client(again, again.token).versions(image=image.name)
        assert [v.serial for v in listed] == [before.serial], "nothing published unsigned"
        ops = client(again, token(again, "operator", "ops"))
        pass_all(ops, image, before.serial)
        with pytest.raises(httpx.HTTPStatusError) as refused:
            move(ops, image, before.serial, "active")
        assert refused.value.response.json() == {"detail": says}
        assert ops.version(image.name, before.serial).state == "testing", "not promoted"

        rotate_keys(again)  # the way back: a new key, the running server signs with it
        after = publish(again, image, tmp=tmp_path, to=("testing", "active"))
        (build,) = attestations(anon, image.name, after.serial)["attestations"][:1]
        statement(build["envelope"], active_key(anon))
        answers = [anon.get("/api/v1/keys").text] + [
            anon.get(f"/api/v1/images/{image.name}/versions/{s}/attestations").text
            for s in (before.serial, after.serial)
        ]
    body = "".join(pem.splitlines()[1:-1])
    for text in (caplog.text, *answers):
        assert body not in text and "PRIVATE KEY" not in text, "the key is never shown"


def test_a_publish_that_reports_its_builds_names_hosts_tools_times_and_inputs(
    catalog: CatalogClient, anonymous: httpx.Client, tmp_path: Path
):
    image, serial = new_image(), next_serial()
    request = upload(catalog, image, serial, tmp=tmp_path)
    at = datetime(2026, 12, 4, 19, 0, tzinfo=UTC)
    for n, arch in enumerate(request.arches):
        arch.built = BuildRecord(
            host=f"builder-{arch.arch}",
            tool_version="icefloe 0.1.0",
            started_at=at + timedelta(minutes=n),
            finished_at=at + timedelta(minutes=n + 2),
        )
    items = {"deb:busybox-static": f"1:1.35.0-4+b3 sha256:{'a' * 64}"}
    request.inputs = VersionInputs(
        spec_digest=spec_digest(image), arches={"x86_64": ArchInputs(items=items)}
    )
    catalog.publish(request)
    (build,) = attestations(anonymous, image.name, serial)["attestations"]
    run = statement(build["envelope"], active_key(anonymous))["predicate"]["runDetails"]
    assert run["builder"]["version"] == {"icefloe": icefloe_version(), "busybox": "icefloe 0.1.0"}
    assert run["metadata"]["startedOn"] == "2026-12-04T19:00:00Z"
    assert run["metadata"]["finishedOn"] == "2026-12-04T19:03:00Z"
    hosts = {b["name"]: b.get("content") for b in run["byproducts"]}
    assert base64.b64decode(hosts["amd64/build-host"]) == b"builder-x86_64"
    assert base64.b64decode(hosts["i386/build-host"]) == b"builder-i686"
    said = statement(build["envelope"], active_key(anonymous))["predicate"]["buildDefinition"]
    assert {
        "name": "amd64/busybox-static",
        "digest": {"sha256": "a" * 64},
        "annotations": {"version": "1:1.35.0-4+b3"},
    } in said["resolvedDependencies"]


def test_a_key_file_holding_another_key_is_refused_too(tmp_path: Path):
    state, image = tmp_path / "server", new_image()
    with RunningServer(state) as server:
        (made,) = keys_of(server)
    key_file(server).write_bytes(CryptoSigner.generate_ed25519().private_bytes)
    with RunningServer(state) as again:
        with pytest.raises(httpx.HTTPStatusError) as refused:
            publish(again, image, tmp=tmp_path)
        detail = refused.value.response.json()["detail"]
        assert f"is not key {made}, the active one" in detail
        assert keys_of(again) == [made], "the file's key is not adopted"


def keys_of(server: RunningServer) -> list[str]:
    with http(server) as anonymous:
        return list(keys(anonymous))


def test_with_public_feeds_off_the_keys_stay_public_and_attestations_need_a_token(
    tmp_path: Path,
):
    with RunningServer(tmp_path / "server", public_feeds=False) as server, http(server) as c:
        image = new_image()
        published = publish(server, image, tmp=tmp_path)
        assert c.get("/api/v1/keys").status_code == 200
        paths = (
            f"/api/v1/images/{image.name}/versions/{published.serial}/attestations",
            f"/api/v1/attestations/{published.fingerprint}",
        )
        for path in paths:
            assert c.get(path).status_code == 401, path
        c.headers["Authorization"] = f"Bearer {token(server, 'reader')}"
        for path in paths:
            assert c.get(path).json()["attestations"][0]["kind"] == "build", path
