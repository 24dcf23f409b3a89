"""Signed streams (server_api/sjson.py, server_api/gpg.py): every feed's index.sjson and
images.sjson check with Debian's `gpgv` against the published key and say what the .json say,
in the server's answers, the static trees and an export; the key is made once and kept across
restarts, a server that lost it refuses to sign and makes none, its secret is in no answer,
tree or log, and concurrent requests across a change all verify while each feed is signed once.
"""

import base64
import json
import logging
import re
import shutil
import ssl
import stat
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from core.config import ServerSettings
from harness import gpgv
from harness.front import credential, export, nginx_front, wait_written
from harness.processes import free_port, stop
from harness.publish import new_image, publish
from harness.servers import RunningServer, server_process, tls
from harness.waiting import wait_until
from server_api import gpg
from server_api.models import SigningKey

pytestmark = pytest.mark.gpg

STREAMS = "streams/v1"


def key_rows(server: RunningServer) -> list[SigningKey]:
    with Session(server.services.engine) as session:
        return list(session.exec(select(SigningKey).where(SigningKey.purpose == "streams")))


def ring_of(web: httpx.Client, base: str, tmp: Path) -> Path:
    """The published key as gpgv's keyring, as a mirror that pinned it holds it."""
    answer = web.get(f"{base}/{STREAMS}/icefloe.asc")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/pgp-keys"
    return gpgv.keyring(answer.text, tmp / f"ring-{abs(hash(base))}.gpg")


def check_signed(ring: Path, read) -> None:
    """`read(name)` -> bytes of a feed's documents: each .sjson verifies and says what its
    .json says (images byte for byte, the index with its paths on the .sjson); a flipped
    byte of either fails gpgv."""
    images, index = read("images.json"), read("index.json")
    signed_images, signed_index = read("images.sjson"), read("index.sjson")
    assert gpgv.verify(ring, signed_images) == images
    listed = json.loads(gpgv.verify(ring, signed_index))
    expected = json.loads(index)
    for entry in expected["index"].values():
        assert entry["path"].endswith(".json")
        entry["path"] = entry["path"][: -len(".json")] + ".sjson"
    assert listed == expected
    for signed in (signed_images, signed_index):
        body = signed.index(b"\n\n") + 2  # the first byte of the signed text
        flipped = bytearray(signed)
        flipped[body] ^= 0x01
        with pytest.raises(gpgv.BadSignature, match="BAD signature"):
            gpgv.verify(ring, bytes(flipped))


def test_every_feed_is_signed_and_checks_with_gpgv(tmp_path: Path):
    with RunningServer(tmp_path / "server") as server:
        publish(server, new_image(), tmp=tmp_path, to=("testing",))
        publish(server, new_image(), tmp=tmp_path, to=("testing", "active"))
        bases = ["/channels/testing", "/channels/active", "/channels/testing/fresh/t1"]
        bases += [
            credential(server, c, f)[0] for c in ("testing", "active") for f in ("lxd", "incus")
        ]
        [row] = key_rows(server)
        home = server.server_settings.gnupg_home
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        with httpx.Client(base_url=server.url, verify=tls(server)) as web:
            for base in bases:
                ring = ring_of(web, base, tmp_path)
                assert web.get(f"{base}/{STREAMS}/icefloe.asc").text == row.public_key

                def read(name: str, base: str = base) -> bytes:
                    answer = web.get(f"{base}/{STREAMS}/{name}")
                    assert answer.status_code == 200, (base, name, answer.text)
                    return answer.content

                check_signed(ring, read)
            signed = web.get(f"/channels/testing/{STREAMS}/images.sjson")
            assert row.keyid in gpgv_says(signed.content, ring)
            again = web.get(
                f"/channels/testing/{STREAMS}/images.sjson",
                headers={"If-None-Match": signed.headers["etag"]},
            )
            assert again.status_code == 304
            assert web.get(f"/feeds/nope/{STREAMS}/icefloe.asc").status_code == 403


def gpgv_says(signed: bytes, ring: Path) -> str:
    """gpgv's words on a good signature (the key's fingerprint among them)."""
    done = subprocess.run(
        ["gpgv", "--keyring", str(ring), "-"], input=signed, capture_output=True, check=True
    )
    return done.stderr.decode()


def test_simplestreams_own_mirror_copies_the_signed_feed_and_refuses_a_tampered_one(
    tmp_path: Path,
):
    """sstream-mirror reads index.sjson, follows its path to images.sjson, checks both with
    gpgv and the pinned key and copies every item; an altered copy or another key stops it."""
    with RunningServer(tmp_path / "server") as server:
        serial = publish(server, new_image(), tmp=tmp_path, to=("testing",)).serial
        [row] = key_rows(server)
        ring = gpgv.keyring(row.public_key, tmp_path / "ring.gpg")
        index = f"{server.url}/channels/testing/{STREAMS}/index.sjson"
        ca = server.server_settings.cert_path
        done = gpgv.sstream_mirror(index, ring, tmp_path / "mirror", ca)
        assert done.returncode == 0, done.stderr
        copied = tmp_path / "mirror"
        images = json.loads(gpgv.verify(ring, (copied / STREAMS / "images.sjson").read_bytes()))
        items = [
            item
            for product in images["products"].values()
            for item in product["versions"][serial]["items"].values()
        ]
        for item in items:
            assert (copied / item["path"]).stat().st_size == item["size"]
        export(server, "testing", tmp_path / "export")
    exported = tmp_path / "export" / STREAMS
    assert gpgv.sstream_mirror(str(exported / "index.sjson"), ring, tmp_path / "m2").returncode == 0
    other = gpg_home_key(tmp_path / "other")
    refused = gpgv.sstream_mirror(str(exported / "index.sjson"), other, tmp_path / "m3")
    assert refused.returncode != 0 and "gpgv" in refused.stderr
    signed = (exported / "images.sjson").read_bytes()
    (exported / "images.sjson").write_bytes(signed.replace(serial.encode(), b"20991231-0001", 1))
    tampered = gpgv.sstream_mirror(str(exported / "index.sjson"), ring, tmp_path / "m4")
    assert tampered.returncode != 0 and "gpgv" in tampered.stderr
    assert not (tmp_path / "m4" / STREAMS / "images.sjson").exists()


def gpg_home_key(home: Path) -> Path:
    """The keyring of another key (a key of a home of the test's own)."""
    gpg.prepare(home, create=True)
    try:
        fingerprint, _ = gpg.ensure_key(home, "someone else <other@example.invalid>")
        return gpgv.keyring(gpg.public_key(home, fingerprint), home.with_suffix(".gpg"))
    finally:
        gpg.stop_agent(home)


def test_the_static_trees_and_an_export_hold_the_signed_forms_and_the_key(tmp_path: Path):
    with RunningServer(tmp_path / "server") as server:
        publish(server, new_image(), tmp=tmp_path, to=("testing", "active"))
        wait_written(server)
        [row] = key_rows(server)
        ring = gpgv.keyring(row.public_key, tmp_path / "ring.gpg")
        root = server.server_settings.static_root
        trees = [p for p in root.iterdir() if (p / "current").is_dir()]
        assert {p.name for p in trees} >= {"testing", "active", "testing-lxd", "active-incus"}
        for tree in trees:
            streams = tree / "current" / STREAMS
            assert (streams / "icefloe.asc").read_text() == row.public_key
            check_signed(ring, lambda name, s=streams: (s / name).read_bytes())
        dest = tmp_path / "export"
        done = export(server, "active", dest)
        assert ".sjson" in done.stdout
        streams = dest / STREAMS
        assert (streams / "icefloe.asc").read_text() == row.public_key
        check_signed(ring, lambda name: (streams / name).read_bytes())
        assert server.services.streams.refused is None


def agents(home: Path) -> list[str]:
    """The gpg-agent processes serving `home`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if words[0].endswith(b"gpg-agent") and str(home).encode() in words:
            found.append(cmdline.parent.name)
    return found


def test_a_restarted_server_signs_with_the_key_it_made_at_first_start(tmp_path: Path):
    state = tmp_path / "server"
    with RunningServer(state) as server:
        [first] = key_rows(server)
        home = server.server_settings.gnupg_home
        assert first.keyid in gpg.secret_fingerprints(home)
        publish(server, new_image(), tmp=tmp_path, to=("testing",))
        wait_written(server)
        assert agents(home), "signing started the home's agent"
    assert agents(home) == [], "a stopped server leaves no agent"
    with RunningServer(state) as server:
        assert [(r.keyid, r.public_key) for r in key_rows(server)] == [
            (first.keyid, first.public_key)
        ]
        assert gpg.secret_fingerprints(server.server_settings.gnupg_home) == [first.keyid]
        publish(server, new_image(), tmp=tmp_path, to=("testing",))
        ring = gpgv.keyring(first.public_key, tmp_path / "ring.gpg")
        with httpx.Client(base_url=server.url, verify=tls(server)) as web:
            signed = web.get(f"/channels/testing/{STREAMS}/images.sjson").content
            assert (
                gpgv.verify(ring, signed)
                == web.get(f"/channels/testing/{STREAMS}/images.json").content
            )
    assert agents(home) == []


@pytest.mark.slow
def test_icefloe_server_makes_its_key_once_and_leaves_no_agent_or_secret(tmp_path: Path):
    """As `icefloe server` runs it (a process, SIGTERM to stop): the key made at the first
    start, kept at the second, its agent gone after each, its secret in no line it logs."""
    state, log = tmp_path / "server", tmp_path / "server.log"
    settings = ServerSettings(state_dir=state, port=free_port())
    fingerprints = []
    for _ in range(2):
        with log.open("ab") as out:
            proc = server_process(state, settings.port, out)
        try:
            base = f"https://127.0.0.1:{settings.port}/channels/testing/{STREAMS}"
            trust = ssl.create_default_context(cafile=settings.cert_path)
            with httpx.Client(verify=trust) as web:
                ring = gpgv.keyring(web.get(f"{base}/icefloe.asc").text, tmp_path / "ring.gpg")
                text = gpgv.verify(ring, web.get(f"{base}/images.sjson").content)
                assert text == web.get(f"{base}/images.json").content
            fingerprints += gpg.secret_fingerprints(settings.gnupg_home)
        finally:
            stop(proc)
        assert agents(settings.gnupg_home) == []
    assert len(set(fingerprints)) == 1
    said = log.read_bytes()
    assert said.count(b"made the streams signing key") == 1
    secret = secret_of(settings.gnupg_home)
    assert secret.hex().encode() not in said.lower() and secret not in said


def test_a_line_gpg_would_cut_is_not_signed(tmp_path: Path):
    """gpg clear-signs a line longer than 19,993 bytes cut short, with only a warning."""
    with RunningServer(tmp_path / "server") as server:
        home, [row] = server.server_settings.gnupg_home, key_rows(server)
        ring = gpgv.keyring(row.public_key, tmp_path / "ring.gpg")
        fits = b'{"a":"' + b"x" * (gpg.MAX_LINE - 8) + b'"}'
        assert gpgv.verify(ring, gpg.clearsign(home, row.keyid, fits)) == fits
        with pytest.raises(ValueError, match="cannot be clear-signed"):
            gpg.clearsign(home, row.keyid, fits + b"x")
        gpg.stop_agent(home)


def held(home: Path) -> list[str]:
    """What is left of a GnuPG home: its secret keys' files (none: no directory)."""
    keys = home / "private-keys-v1.d"
    return sorted(p.name for p in keys.iterdir()) if keys.is_dir() else []


@pytest.mark.parametrize("lost", ["removed", "emptied"])
def test_a_server_whose_key_is_gone_refuses_to_sign_and_makes_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, lost: str
):
    state = tmp_path / "server"
    with RunningServer(state) as server:
        [made] = key_rows(server)
        home = server.server_settings.gnupg_home
    kept = shutil.copytree(home, tmp_path / "kept-gnupg")
    shutil.rmtree(home)
    if lost == "emptied":
        home.mkdir(mode=0o700)
    caplog.set_level(logging.INFO, logger="server_api")
    with RunningServer(state) as server:
        assert held(home) == [], "no new key"
        assert [r.keyid for r in key_rows(server)] == [made.keyid]
        [said] = [r for r in caplog.records if r.levelno >= logging.ERROR and "sjson" in r.message]
        assert made.keyid in said.message and "no new key is made" in said.message
        serial = publish(server, new_image(), tmp=tmp_path, to=("testing",)).serial
        wait_written(server)
        with httpx.Client(base_url=server.url, verify=tls(server)) as web:
            for name in ("index.sjson", "images.sjson"):
                refused = web.get(f"/channels/testing/{STREAMS}/{name}")
                assert refused.status_code == 503
                assert "signing key" in refused.json()["detail"]
                assert "missing" in refused.json()["detail"]
            assert serial in web.get(f"/channels/testing/{STREAMS}/images.json").text
            # The recorded public key still checks what the key signed before.
            assert web.get(f"/channels/testing/{STREAMS}/icefloe.asc").text == made.public_key
        current = server.server_settings.static_root / "testing" / "current" / STREAMS
        assert serial in (current / "images.json").read_text()
        assert not (current / "images.sjson").exists()
        done = export(server, "testing", tmp_path / "export", code=1)
        assert "not signed" in done.stderr and made.keyid in done.stderr
        assert not (tmp_path / "export" / STREAMS / "images.sjson").exists()
    assert held(home) == []
    assert home.exists() is (lost == "emptied")
    made_said = [r for r in caplog.records if r.message.startswith("made the streams")]
    assert len(made_said) == 1, "at the first start only"
    # The operator restores the key: the trees written unsigned are signed with no change.
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(kept, home)
    with RunningServer(state) as server:
        ring = gpgv.keyring(made.public_key, tmp_path / "ring.gpg")
        assert [r.keyid for r in key_rows(server)] == [made.keyid]
        wait_until(lambda: (current / "images.sjson").exists(), "the tree signed", 20)
        check_signed(ring, lambda name: (current / name).read_bytes())


def test_a_key_lost_while_the_server_runs_leaves_the_feeds_unsigned_not_stale(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    with RunningServer(tmp_path / "server") as server:
        publish(server, new_image(), tmp=tmp_path, to=("testing",))
        wait_written(server)
        home = server.server_settings.gnupg_home
        gpg.stop_agent(home)
        shutil.rmtree(home)
        serial = publish(server, new_image(), tmp=tmp_path, to=("testing",)).serial
        wait_written(server)
        current = server.server_settings.static_root / "testing" / "current" / STREAMS
        assert serial in (current / "images.json").read_text()
        assert not (current / "images.sjson").exists()
        with httpx.Client(base_url=server.url, verify=tls(server)) as web:
            refused = web.get(f"/channels/testing/{STREAMS}/images.sjson")
            assert refused.status_code == 503
            assert "could not sign" in refused.json()["detail"]
            assert serial in web.get(f"/channels/testing/{STREAMS}/images.json").text
        assert any("failed" in r.message and "gone" in r.message for r in caplog.records)
    assert not home.exists(), "no home made again, no key made"
    assert agents(home) == []


def secret_of(home: Path) -> bytes:
    """The key's secret scalar, read from the agent's key file as gpg-agent stores it."""
    [keyfile] = (home / "private-keys-v1.d").iterdir()
    found = re.search(rb"\(d #([0-9A-F]+)#\)", keyfile.read_bytes())
    assert found, "gpg-agent's extended key format"
    return bytes.fromhex(found.group(1).decode())


def test_the_secret_is_in_no_answer_tree_or_log(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    with RunningServer(tmp_path / "server") as server:
        publish(server, new_image(), tmp=tmp_path, to=("testing",))
        wait_written(server)
        home = server.server_settings.gnupg_home
        secret = secret_of(home)
        forms = [secret, secret.hex().encode(), secret.hex().upper().encode()]
        forms += [base64.b64encode(secret)[:40], b"PRIVATE KEY"]
        seen = []
        with httpx.Client(base_url=server.url, verify=tls(server)) as web:
            for name in ("index.json", "images.json", "index.sjson", "images.sjson", "icefloe.asc"):
                seen.append(web.get(f"/channels/testing/{STREAMS}/{name}").content)
            seen.append(web.get("/openapi.json").content)
            seen.append(web.get("/").content)
        root = server.server_settings.static_root
        seen += [p.read_bytes() for p in root.rglob("*") if p.is_file() and "files" not in p.parts]
        dest = tmp_path / "export"
        export(server, "testing", dest)
        seen += [p.read_bytes() for p in (dest / STREAMS).iterdir()]
    seen += [r.getMessage().encode() for r in caplog.records]
    assert any(b"BEGIN PGP PUBLIC KEY BLOCK" in b for b in seen), "the public half is published"
    assert any(b"made the streams signing key" in b for b in seen), "its making is logged"
    for form in forms:
        assert not [b for b in seen if form in b], form
    assert not list(root.rglob("private-keys-v1.d")), "no part of the home in the trees"


def test_concurrent_requests_across_a_change_all_verify_and_each_feed_is_signed_once(
    tmp_path: Path,
):
    """100 requests for the signed forms (20 at a time) while versions are published: each
    answer verifies; the server signs once per feed and document, never per request."""
    with RunningServer(tmp_path / "server") as server:
        publish(server, new_image(), tmp=tmp_path, to=("testing",))
        [row] = key_rows(server)
        ring = gpgv.keyring(row.public_key, tmp_path / "ring.gpg")
        stop = threading.Event()

        def publishing() -> int:
            n = 0
            while not stop.is_set() and n < 5:
                publish(server, new_image(), tmp=tmp_path / f"p{n}", to=("testing",))
                n += 1
            return n

        def fetch(i: int) -> tuple[str, bytes]:
            name = ("images.sjson", "index.sjson")[i % 2]
            with httpx.Client(base_url=server.url, verify=tls(server)) as web:
                answer = web.get(f"/channels/testing/{STREAMS}/{name}")
            assert answer.status_code == 200, answer.text
            return name, gpgv.verify(ring, answer.content)

        with ThreadPoolExecutor(21) as pool:
            changes = pool.submit(publishing)
            answers = list(pool.map(fetch, range(100)))
            stop.set()
            published = changes.result()
        assert published >= 1
        for name, text in answers:
            assert json.loads(text)["format"] == (
                "products:1.0" if name == "images.sjson" else "index:1.0"
            )
        wait_written(server)
        signer = server.services.streams
        before = signer.signatures
        with httpx.Client(base_url=server.url, verify=tls(server)) as web:
            for _ in range(20):
                for name in ("images.sjson", "index.sjson"):
                    assert web.get(f"/channels/testing/{STREAMS}/{name}").status_code == 200
        assert signer.signatures == before, "the current feed was signed already"


@pytest.mark.nginx
def test_nginx_serves_the_signed_forms_from_the_trees_and_the_server_says_why_not(tmp_path: Path):
    state = tmp_path / "server"
    for refused in (False, True):
        with (
            RunningServer(state, accel_redirect=True) as server,
            nginx_front(server, tmp_path / f"nginx-{refused}") as front,
        ):
            [row] = key_rows(server)
            publish(server, new_image(), tmp=tmp_path / str(refused), to=("testing",))
            wait_written(server)
            private, _ = credential(server, "testing", "incus")
            ring = gpgv.keyring(row.public_key, tmp_path / "ring.gpg")
            with httpx.Client(base_url=front.url, verify=front.trust()) as web:
                for base in ("/channels/testing", private):
                    answers = {
                        n: web.get(f"{base}/{STREAMS}/{n}")
                        for n in ("index.json", "images.json", "index.sjson", "images.sjson")
                    }
                    if refused:
                        assert answers["images.sjson"].status_code == 503, base
                        assert "missing" in answers["index.sjson"].json()["detail"]
                        continue
                    check_signed(ring, lambda n, a=answers: a[n].content)
                    key = web.get(f"{base}/{STREAMS}/icefloe.asc")
                    assert key.headers["content-type"] == "application/pgp-keys"
        shutil.rmtree(server.server_settings.gnupg_home, ignore_errors=refused)
