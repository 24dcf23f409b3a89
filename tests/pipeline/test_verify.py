"""`icefloe verify` on this LXD host, as a user runs it: a real pipeline takes a busybox image
to `active`, the real `lxc` client launches it from the server's feed, and `icefloe verify`
passes on that image (by the fingerprint LXD launched and through the remote's alias). Then
each way a user should be refused: a flipped byte in a stored statement (altered), a
statement of another version in its place (another fingerprint), no statement (unsigned), a
version only in testing (untested), a revoked version (who and why), a version forced past
the gate (exit 3 and a FORCED line with the actor and reason), and a rotated key (old pins
still verify what was re-signed, a version signed after the rotation says re-pin)."""

import base64
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from clients.catalog import CatalogClient
from core.catalog import AssessmentReport, TransitionRequest
from core.pipeline import PipelineInput
from harness.lxd import Lxc
from harness.publish import busybox_spec, publish
from harness.servers import RunningServer, client, token
from server_api.models import Attestation, Version
from tests.support import rotate_keys, run_icefloe
from workflows.trigger import new_serial, start_pipeline

pytestmark = [pytest.mark.lxd, pytest.mark.temporal, pytest.mark.debs]


class Icefloe:
    """The `icefloe` command in a process of its own, with the user's `lxc` config and pins."""

    def __init__(self, lxc: Lxc, pins: Path, **env: str) -> None:
        self.env = lxc.env | {"ICEFLOE_PINNED_KEYS": str(pins), "ICEFLOE_LOG_LEVEL": "WARNING"}
        self.env |= env

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = run_icefloe(*args, env=self.env, timeout_s=120)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def verify(self, ref: str, code: int, *more: str) -> str:
        """`icefloe verify REF`: its exit code as expected, its output."""
        started = time.monotonic()
        done = self("verify", ref, *more)
        took = time.monotonic() - started
        said = f"{done.stdout}{done.stderr}exit {done.returncode} in {took:.2f} s"
        print("$ icefloe verify", ref, *more, "\n" + said)  # shown when a test fails
        assert done.returncode == code, (done.stdout, done.stderr)
        return done.stdout


def keyids(server: RunningServer) -> list[str]:
    with closing(client(server, server.token)) as c:
        listed = c._http.get("/api/v1/keys").json()["keys"]
    return [k["keyid"] for k in listed if k["purpose"] == "provenance"]


@contextmanager
def stored(
    server: RunningServer, image: str, serial: str, change: Callable[[list[Attestation]], None]
) -> Iterator[None]:
    """The version's stored attestations changed by `change` (as one who can write the
    server's database could), put back afterwards."""
    with Session(server.services.engine) as session:
        version = session.exec(
            select(Version).where(Version.image == image, Version.serial == serial)
        ).one()
        rows = list(session.exec(select(Attestation).where(Attestation.version_id == version.id)))
        kept = [(r.id, json.loads(json.dumps(r.envelope))) for r in rows]
        change(rows)
        session.commit()
    try:
        yield
    finally:
        with Session(server.services.engine) as session:
            for row_id, envelope in kept:
                row = session.get(Attestation, row_id)
                assert row is not None
                row.envelope = envelope
                session.add(row)
            session.commit()


def flip_a_byte(rows: list[Attestation]) -> None:
    env = dict(rows[0].envelope)
    payload = bytearray(base64.b64decode(env["payload"]))
    payload[payload.index(b'"serial"') + 1] ^= 0x01  # one letter of one key
    rows[0].envelope = env | {"payload": base64.b64encode(bytes(payload)).decode()}


async def test_verify_passes_on_the_launched_image_and_refuses_the_altered_revoked_and_forced(
    temporal: Any,
    workers: list[str],
    image_server: RunningServer,
    catalog: CatalogClient,
    lxc: Lxc,
    tmp_path: Path,
) -> None:
    alias = f"icefloe-verify-{uuid.uuid4().hex[:8]}"
    image = busybox_spec(f"v{uuid.uuid4().hex[:6]}", aliases=[alias])
    serial = new_serial()
    handle = await start_pipeline(temporal, PipelineInput(spec=image, serial=serial))
    result = await handle.result()
    assert result.state == "active", result.message

    cert = image_server.server_settings.cert_path
    lxc.add_remote("ice", catalog.channel_url("active", fresh=uuid.uuid4().hex[:12]), cert)
    lxc.add_remote("tst", catalog.channel_url("testing", fresh=uuid.uuid4().hex[:12]), cert)
    operator = token(image_server, "operator", "ops-alice")
    icefloe = Icefloe(
        lxc,
        tmp_path / "pins.json",
        ICEFLOE_SERVER_URL=image_server.url,
        ICEFLOE_SERVER_CA=str(cert),
        ICEFLOE_OPERATOR_TOKEN=operator,
    )
    # Before any pin: verify cannot tell, and says how to pin.
    assert "icefloe pin --server" in icefloe("verify", f"ice:{alias}").stderr
    (tmp_path / "pins.json").write_text("{")
    garbled = icefloe("verify", f"ice:{alias}")
    assert garbled.returncode == 2 and "is not a file of pinned keys" in garbled.stderr
    (tmp_path / "pins.json").unlink()

    nowhere = icefloe("pin", "--remote", "nowhere")
    assert nowhere.returncode == 2 and "no remote 'nowhere'" in nowhere.stderr
    pinned = icefloe("pin", "--remote", "ice")
    assert pinned.returncode == 0, pinned.stderr
    assert all(k in pinned.stdout for k in keyids(image_server)), pinned.stdout

    name = f"icefloe-verify-{uuid.uuid4().hex[:8]}"
    try:
        lxc("launch", f"ice:{alias}", name, timeout=300)
        fingerprint = json.loads(lxc("list", name, "--format", "json"))[0]["config"][
            "volatile.base_image"
        ]
        lxc.took.add(fingerprint)
    finally:
        lxc.quietly("delete", "--force", name)
    assert catalog.version(image.name, serial).arches[0].fingerprint == fingerprint

    said = icefloe.verify(fingerprint, 0)
    assert f"{image.name} {serial}" in said and "VERIFIED" in said, said
    assert "built by busybox" in said and "amd64 boots: passed on" in said, said
    assert icefloe.verify(fingerprint[:12], 0) == said
    assert "VERIFIED" in icefloe.verify(f"ice:{alias}", 0)
    answer = json.loads(icefloe.verify(fingerprint, 0, "--json"))
    assert answer["verified"] is True and answer["arch"] == "amd64"
    assert {r["state"] for r in answer["results"]} <= {"passed", "not_applicable"}
    assert answer["build"]["definition_sha256"] and answer["build"]["manifest_sha256"]

    with stored(image_server, image.name, serial, flip_a_byte):
        said = icefloe.verify(fingerprint, 1)
        assert "ALTERED: the signature by pinned key" in said, said

    other = publish(catalog, busybox_spec(f"o{uuid.uuid4().hex[:6]}"), build_in=tmp_path)
    with Session(image_server.services.engine) as session:
        version = session.exec(select(Version).where(Version.serial == other.serial)).first()
        assert version is not None
        (theirs,) = session.exec(select(Attestation).where(Attestation.version_id == version.id))

    def swap(rows: list[Attestation]) -> None:
        for r in rows:
            r.envelope = theirs.envelope

    with stored(image_server, image.name, serial, swap):
        said = icefloe.verify(fingerprint, 1)
        assert (
            f"OTHER-SUBJECT: a statement about amd64/lxd-fingerprint {other.fingerprint[:12]}"
            in said
        )

    def strip(rows: list[Attestation]) -> None:
        for r in rows:
            r.envelope = r.envelope | {"signatures": []}

    with stored(image_server, image.name, serial, strip):
        assert "UNSIGNED: an envelope without a signature" in icefloe.verify(fingerprint, 1)

    # Only in testing: no signed test results yet.
    fresh = busybox_spec(f"t{uuid.uuid4().hex[:6]}", aliases=[f"{alias}-t"])
    testing = publish(catalog, fresh, build_in=tmp_path, to=["testing"])
    said = icefloe.verify(f"tst:{alias}-t", 1)
    assert f"{fresh.name} {testing.serial}" in said and "UNTESTED: no signed test results" in said

    # Forced past the gate by an operator, a check failed: the version of the image in testing.
    forced = testing
    catalog.record(
        fresh.name,
        forced.serial,
        AssessmentReport(arch="x86_64", check="dns", host="h", state="failed", evidence="no"),
    )
    with closing(client(image_server, operator)) as ops:
        ops.transition(
            fresh.name,
            forced.serial,
            TransitionRequest(to="active", force=True, reason="hotfix, dns known bad"),
        )
    said = icefloe.verify(forced.fingerprint, 3)
    assert "FORCED: forced past the gate by ops-alice" in said and "hotfix, dns known bad" in said
    assert "FORCED past the gate by ops-alice" in said
    assert "FORCED: forced past" in icefloe.verify(forced.fingerprint, 0, "--allow-forced")

    revoked = icefloe("revoke", image.name, serial, "--reason", "CVE-2026-0001 in busybox")
    assert revoked.returncode == 0, revoked.stderr
    said = icefloe.verify(fingerprint, 1)
    assert "REVOKED: revoked by ops-alice" in said and "CVE-2026-0001 in busybox" in said, said


def test_a_rotated_key_old_pins_verify_what_was_re_signed_and_new_statements_say_re_pin(
    tmp_path: Path, lxc: Lxc
) -> None:
    """A server of its own: the shared one's key stays as the other tests pinned it."""
    with RunningServer(tmp_path / "server") as server:
        alias = f"icefloe-rot-{uuid.uuid4().hex[:8]}"
        image = busybox_spec(f"r{uuid.uuid4().hex[:6]}", aliases=[alias])
        old = publish(server, image, build_in=tmp_path, to=["testing", "active"])
        cert = server.server_settings.cert_path
        with closing(client(server, server.token)) as c:
            url = c.channel_url("active", fresh=uuid.uuid4().hex[:12])
        lxc.add_remote("rot", url, cert)
        icefloe = Icefloe(
            lxc, tmp_path / "pins.json", ICEFLOE_SERVER_URL=server.url, ICEFLOE_SERVER_CA=str(cert)
        )
        assert icefloe("pin", "--remote", "rot").returncode == 0
        (old_key,) = keyids(server)
        assert "VERIFIED" in icefloe.verify(f"rot:{alias}", 0)

        rotate_keys(server)
        (new_key,) = set(keyids(server)) - {old_key}
        # What was signed before is signed by both keys now: the old pin still verifies it.
        said = icefloe.verify(old.fingerprint, 0)
        assert f"signed by {old_key}" in said
        # Signed after the rotation, by the new key alone.
        later = busybox_spec(f"r{uuid.uuid4().hex[:6]}", aliases=[f"{alias}-later"])
        new = publish(server, later, build_in=tmp_path, to=["testing", "active"])
        said = icefloe.verify(f"rot:{alias}-later", 1)
        assert f"UNPINNED: signed only by key {new_key}" in said and "re-pin" in said, said
        repinned = icefloe("pin", "--remote", "rot")
        assert f"{new_key}  signing  (new since the last pin)" in repinned.stdout, repinned.stdout
        assert f"{old_key}  retired" in repinned.stdout
        assert "VERIFIED" in icefloe.verify(new.fingerprint, 0)


def test_a_server_with_public_feeds_off_needs_a_reader_token_for_the_statements(
    tmp_path: Path, lxc: Lxc
) -> None:
    """The keys stay public (a host pins them); the statements are as private as the feeds:
    without a token verify cannot tell (exit 2, naming the setting), with a reader's it can."""
    with RunningServer(tmp_path / "server", public_feeds=False) as server:
        image = busybox_spec(f"p{uuid.uuid4().hex[:6]}")
        done = publish(server, image, build_in=tmp_path, to=["testing", "active"])
        cert = str(server.server_settings.cert_path)
        env = {"ICEFLOE_SERVER_URL": server.url, "ICEFLOE_SERVER_CA": cert}
        icefloe = Icefloe(lxc, tmp_path / "pins.json", **env)
        assert icefloe("pin").returncode == 0
        refused = icefloe("verify", done.fingerprint)
        assert refused.returncode == 2 and "ICEFLOE_READER_TOKEN" in refused.stderr
        reader = Icefloe(
            lxc, tmp_path / "pins.json", ICEFLOE_READER_TOKEN=token(server, "reader"), **env
        )
        assert "VERIFIED" in reader.verify(done.fingerprint, 0)
