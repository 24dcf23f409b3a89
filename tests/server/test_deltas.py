"""Rootfs deltas: a new version of an image carries an xdelta3 delta from the previous
version's squashfs, listed as the `squashfs.vcdiff` item with `delta_base`; LXD with the
previous version cached refreshes by downloading the delta, not the whole squashfs.

The server makes a delta after the publish has answered, in a thread of its own (one
xdelta3 at a time per process): `settled` waits for it. The tests that hold xdelta3 back
put a wrapper of it first on PATH (the server runs in this process), gated by files.
The one that fails runs the real xdelta3 on a store whose filesystem (a tmpfs) is full.

`refresh` (delta_refresh.py, also bench/deltas.py's) is the whole LXD round: cache version
A by alias with auto-update, publish B, wait for its delta, `lxc image refresh`, and count
the file bytes the server sent.
"""

import errno
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as Pending
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlmodel import Session

from clients.catalog import CatalogClient
from core.catalog import Channel, DeltaState
from core.config import ServerSettings, Settings
from core.spec import ImageSpec
from harness.deltas import ARCH, items, refresh, settled, two_built_versions, two_busyboxes
from harness.lxd import Lxc
from harness.processes import free_port
from harness.publish import move, new_image, next_serial, publish
from harness.servers import DEBS, RunningServer, client, http, server_process
from harness.waiting import wait_until
from server_api.db import make_engine
from server_api.tokens import create_token
from tests.support import postgres_database

pytestmark = pytest.mark.xdelta3


@pytest.mark.debs
def test_a_new_version_lists_a_delta_that_patches_the_old_squashfs_into_the_new(
    image_server: RunningServer, catalog: CatalogClient, operator: CatalogClient, tmp_path: Path
):
    image, changed, old_serial, new_serial, old_built, new_built = two_built_versions(tmp_path)
    publish(catalog, image, old_serial, files={ARCH: old_built})
    publish(catalog, changed, new_serial, files={ARCH: new_built})
    settled(catalog, changed, new_serial)
    move(catalog, image, old_serial, "testing")
    move(catalog, changed, new_serial, "testing")
    url = catalog.channel_url("testing")

    listed = items(catalog, url, changed, new_serial)
    deltas = [i for i in listed.values() if i["ftype"] == "squashfs.vcdiff"]
    assert len(deltas) == 1 and deltas[0]["delta_base"] == old_serial
    assert deltas[0]["size"] < listed["root.squashfs"]["size"]
    assert not [i for i in items(catalog, url, image, old_serial).values() if "delta_base" in i]
    # The pipeline's test launches (a fresh URL) take whole images, never a delta from a base
    # a concurrent test may be deleting from LXD's store.
    fresh = items(catalog, catalog.channel_url("testing", fresh="t1"), changed, new_serial)
    assert "squashfs.vcdiff" not in [i["ftype"] for i in fresh.values()]
    assert {k: v for k, v in listed.items() if v["ftype"] != "squashfs.vcdiff"} == fresh

    got = catalog._http.get(f"{url}/{deltas[0]['path']}")
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == deltas[0]["sha256"]
    delta, patched = tmp_path / "delta.vcdiff", tmp_path / "patched.squashfs"
    delta.write_bytes(got.content)
    old_root, new_root = old_built[1][1], new_built[1][1]
    subprocess.run(
        ["xdelta3", "-d", "-f", "-s", str(old_root), str(delta), str(patched)], check=True
    )
    assert patched.read_bytes() == new_root.read_bytes() != old_root.read_bytes()

    with Session(image_server.services.engine) as session:  # the files static trees link
        assert (
            deltas[0]["sha256"] in image_server.services.feeds.get(session, Channel.testing).files
        )

    # The base leaves the channel: the delta is of no use to the channel's hosts, and goes.
    move(catalog, image, old_serial, "inactive")
    listed = items(catalog, url, changed, new_serial)
    assert [i["ftype"] for i in listed.values()].count("squashfs.vcdiff") == 0
    assert catalog._http.get(f"{url}/{deltas[0]['path']}").status_code == 404

    # gc takes the base's files; the delta stays while its own version keeps its files.
    store = image_server.services.store
    assert f"{image.name} {old_serial}" in operator.gc(grace_s=0).versions
    assert store.exists(deltas[0]["sha256"]) and not store.exists(old_built[1][0].sha256)
    assert "squashfs.vcdiff" not in json.dumps(items(catalog, url, changed, new_serial))
    move(catalog, changed, new_serial, "inactive")
    assert deltas[0]["sha256"] in operator.gc(grace_s=0).files


@pytest.mark.lxd
@pytest.mark.debs
def test_lxd_refreshes_a_cached_image_by_the_delta(
    image_server: RunningServer, catalog: CatalogClient, tmp_path: Path
):
    lxc = Lxc(tmp_path / "lxc-conf")
    done = refresh(image_server, catalog, lxc, tmp_path, two_busyboxes())
    assert done.refreshed == done.new != done.old
    assert done.delta_size is not None
    assert done.sent.get("squashfs.vcdiff") == done.delta_size
    assert "squashfs" not in done.sent, f"the whole squashfs was sent too: {done.sent}"


@dataclass
class Gate:
    """A wrapper of xdelta3, first on PATH: for deltas in `store` it counts its runs and
    waits until `open` before it runs the real xdelta3; it leaves other servers' deltas
    alone."""

    dir: Path

    def open(self) -> None:
        (self.dir / "open").touch()

    @property
    def runs(self) -> int:
        log = self.dir / "runs"
        return len(log.read_text().splitlines()) if log.exists() else 0


@contextmanager
def gated_xdelta3(tmp: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    real = shutil.which("xdelta3")
    assert real is not None
    gate = Gate(tmp / "gate")
    (gate.dir / "bin").mkdir(parents=True)
    script = gate.dir / "bin" / "xdelta3"
    script.write_text(
        f"""#!/bin/sh
case "$*" in *"{store}"*) ;; *) exec {real} "$@" ;; esac
echo run >> {gate.dir}/runs
n=0
while [ ! -e {gate.dir}/open ] && [ $n -lt 3000 ]; do sleep 0.1; n=$((n + 1)); done
exec {real} "$@"
"""
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    try:
        yield gate
    finally:
        gate.open()  # never leave a server's xdelta3 waiting


def delta_items(catalog: CatalogClient, url: str, image: ImageSpec, serial: str) -> list[dict]:
    return [i for i in items(catalog, url, image, serial).values() if "delta_base" in i]


def tree_lists(server: RunningServer, image: ImageSpec, serial: str, sha256: str) -> bool:
    """Whether the public testing tree (what nginx serves) lists the file for `serial`."""
    path = server.server_settings.static_root / "testing/current/streams/v1/images.json"
    if not path.exists():
        return False
    pid = f"{image.os}:{image.release}:amd64:{image.variant}"
    versions = json.loads(path.read_bytes())["products"].get(pid, {}).get("versions", {})
    return sha256 in json.dumps(versions.get(serial, {}))


def gated_server(tmp: Path, **settings: object) -> RunningServer:
    return RunningServer(tmp / "server", channel_file_grace_s=0, delta_poll_s=0.2, **settings)


@pytest.mark.debs
def test_a_publish_answers_before_its_delta_is_made_and_the_feeds_list_the_delta_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    server = gated_server(tmp_path)
    image, changed, old_serial, new_serial, old_built, new_built = two_built_versions(tmp_path)
    store = server.server_settings.files_dir
    with gated_xdelta3(tmp_path, store, monkeypatch) as gate, server:
        catalog = client(server, server.token)
        publish(catalog, image, old_serial, files={ARCH: old_built})
        move(catalog, image, old_serial, "testing")
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(publish, catalog, changed, new_serial, files={ARCH: new_built})
            try:  # xdelta3 waits for the gate, up to 300 s: the publish must not
                answer.result(timeout=30)
            except Pending:
                gate.open()
                pytest.fail("the publish did not answer while xdelta3 was held: it waits for it")
        view = catalog.version(image.name, new_serial)
        assert [a.delta for a in view.arches] == [DeltaState.pending]
        wait_until(lambda: gate.runs == 1, "the server ran xdelta3")
        # The version goes on meanwhile: in testing with its whole squashfs only.
        move(catalog, changed, new_serial, "testing")
        url = catalog.channel_url("testing")
        assert delta_items(catalog, url, changed, new_serial) == []

        gate.open()
        wait_until(lambda: delta_items(catalog, url, changed, new_serial) != [], "feed lists it")
        (delta,) = delta_items(catalog, url, changed, new_serial)
        assert delta["delta_base"] == old_serial
        view = catalog.version(image.name, new_serial)
        assert [(a.delta, a.delta_base) for a in view.arches] == [(DeltaState.made, old_serial)]
        # The trees nginx serves and the mark it trusts them by follow, as after any change.
        wait_until(
            lambda: tree_lists(server, changed, new_serial, delta["sha256"]), "tree lists it"
        )
        events = catalog.events(image.name, new_serial)
        assert events[-1].from_state == events[-1].to_state == "testing"
        assert server.services.edge.shown_changed() >= events[-1].id
        assert (server.server_settings.static_root / f"files/testing/{delta['sha256']}").exists()
        fresh = catalog.channel_url("testing", fresh="t2")
        assert delta_items(catalog, fresh, changed, new_serial) == []
        with http(server) as anonymous:
            metrics = anonymous.get("/metrics").text
        assert 'icefloe_catalog_deltas{state="made"} 1.0' in metrics
        assert 'icefloe_catalog_deltas{state="none"} 1.0' in metrics  # the first: no base
        assert gate.runs == 1
        catalog.close()


@pytest.mark.debs
def test_a_server_started_after_one_was_killed_mid_delta_makes_the_delta(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    image, changed, old_serial, new_serial, old_built, new_built = two_built_versions(tmp_path)
    state = tmp_path / "server"
    settings = ServerSettings(state_dir=state, port=free_port())
    with Session(make_engine(settings.db_url)) as session:
        secret = create_token(session, "killed", "publisher")
    with gated_xdelta3(tmp_path, settings.files_dir, monkeypatch) as gate:
        killed = server_process(state, settings.port)  # `icefloe server`, our PATH
        server = {"url": f"https://127.0.0.1:{settings.port}", "ca": settings.cert_path}
        catalog = CatalogClient(Settings(server=server, deb_dir=DEBS), token=secret)
        try:
            publish(catalog, image, old_serial, files={ARCH: old_built})
            publish(catalog, changed, new_serial, files={ARCH: new_built})
            wait_until(lambda: gate.runs == 1, "the server ran xdelta3")
        finally:
            catalog.close()
            killed.kill()  # SIGKILL mid-delta: its claim stays, never renewed
            killed.wait()
        gate.open()
        with gated_server(tmp_path, delta_lease_s=2) as second:
            catalog = client(second, second.token)
            view = settled(catalog, changed, new_serial)
            assert [(a.delta, a.delta_base) for a in view.arches] == [(DeltaState.made, old_serial)]
            move(catalog, image, old_serial, "testing")
            move(catalog, changed, new_serial, "testing")
            url = catalog.channel_url("testing")
            assert [d["delta_base"] for d in delta_items(catalog, url, changed, new_serial)] == [
                old_serial
            ]
            catalog.close()
        assert gate.runs == 2  # the killed one's, then the one that made it


@pytest.mark.debs
def test_a_server_stopped_and_started_again_in_one_process_still_makes_deltas(tmp_path: Path):
    """uvicorn running the same app again runs its lifespan again (the fault tests take the
    shared server down and back): the delta thread starts anew, not a second time."""
    image, changed, old_serial, new_serial, old_built, new_built = two_built_versions(tmp_path)
    with RunningServer(tmp_path / "server") as server:
        server.restart()
        catalog = client(server, server.token)
        publish(catalog, image, old_serial, files={ARCH: old_built})
        publish(catalog, changed, new_serial, files={ARCH: new_built})
        assert settled(catalog, changed, new_serial).arches[0].delta == DeltaState.made
        catalog.close()


@contextmanager
def tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    """A filesystem of its own at `mountpoint`, `size` large (as root)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mountpoint], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", mountpoint], check=True)


def fill(directory: Path) -> Path:
    """A file taking all the space left on `directory`'s filesystem."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        while True:
            os.write(fd, bytes(1 << 20))
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return filler


def failed_runs(caplog: pytest.LogCaptureFixture, serial: str) -> int:
    """How many times the server's xdelta3 failed on `serial` (each failure is logged)."""
    return sum(
        r.name == "server_api.deltas"
        and f" {serial} {ARCH} from " in r.getMessage()
        and "xdelta3 failed" in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.root
@pytest.mark.debs
def test_a_delta_that_cannot_be_made_is_recorded_once_and_never_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """The store's filesystem is full when xdelta3 writes the delta: the real xdelta3 fails
    (ENOSPC). Once the space is back, a retry would make the delta: none is ever made."""
    image, changed, old_serial, new_serial, old_built, new_built = two_built_versions(tmp_path)
    with tmpfs(tmp_path / "store", "64m") as store:
        server = gated_server(tmp_path, store_dir=store)
        with server:
            catalog = client(server, server.token)
            publish(catalog, image, old_serial, files={ARCH: old_built})
            first = settled(catalog, image, old_serial).arches[0]
            assert first.delta == DeltaState.none and "no earlier version" in first.delta_detail
            server.services.deltas.stop()  # held back while the store fills up
            publish(catalog, changed, new_serial, files={ARCH: new_built})
            filler = fill(store)
            server.services.deltas.start()
            failed = settled(catalog, changed, new_serial).arches[0]
            assert failed.delta == DeltaState.none and failed.delta_base is None
            assert "xdelta3 failed" in failed.delta_detail
            assert "No space left on device" in failed.delta_detail

            def passed_over() -> None:
                """A later version's xdelta3 runs (the oldest pending arch is claimed first)."""
                later = publish(catalog, changed, tmp=tmp_path).serial  # random files
                detail = settled(catalog, changed, later).arches[0].delta_detail
                assert detail.endswith(": no smaller than the squashfs"), detail
                assert catalog.version(image.name, new_serial).arches[0] == failed

            filler.unlink()  # the space is back: a retry would make the delta now
            passed_over()  # by this server's thread
            server.restart()
            passed_over()  # nor by a server that starts
            move(catalog, image, old_serial, "testing")
            move(catalog, changed, new_serial, "testing")
            assert delta_items(catalog, catalog.channel_url("testing"), changed, new_serial) == []
            catalog.close()
    assert failed_runs(caplog, new_serial) == 1


@pytest.mark.postgres
def test_two_servers_sharing_a_catalog_and_store_make_each_delta_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A burst of publishes to both: each arch's xdelta3 runs once, on one of them."""
    store = tmp_path / "store"
    with postgres_database("icefloe_deltas") as url:
        monkeypatch.setenv("ICEFLOE_SERVER_DATABASE_URL", url)
        shared = {
            "store_dir": store,
            "delta_poll_s": 0.2,
            "channel_file_grace_s": 0,
            "provenance_key": tmp_path / "provenance.key",  # servers of one catalog share it
        }
        with (
            gated_xdelta3(tmp_path, store, monkeypatch) as gate,
            RunningServer(tmp_path / "a", **shared) as a,
            RunningServer(tmp_path / "b", **shared) as b,
        ):
            gate.open()
            image, serials = new_image(arches=["x86_64", "i686"]), [next_serial() for _ in range(6)]
            catalogs = [client(a, a.token), client(b, b.token)]
            for n, serial in enumerate(serials):
                publish(catalogs[n % 2], image, serial, tmp=tmp_path)
            views = [settled(catalogs[0], image, serial) for serial in serials]
            assert [a.delta for v in views for a in v.arches] == [DeltaState.none] * 12
            assert {a.delta_detail for v in views[1:] for a in v.arches} == {
                f"from {s}: no smaller than the squashfs" for s in serials[:-1]
            }
            # Random files: no delta is smaller, but every arch with a base had its one try.
            assert gate.runs == 10
            for c in catalogs:
                c.close()
