"""The feeds as static trees (server_api.static), nginx in front (deploy/nginx), and
`icefloe export`.

Without LXD: every catalog change rewrites the trees (the same bytes the server serves,
files hard-linked from the store), a superseded tree and its files stay for the grace, a
killed writer's leftovers go, nginx serves public feeds from the trees and private feeds
through the server's checks (revocation applies on the next request), uploads stream
through nginx. With LXD (marked): the real `lxc` client copies images from the
nginx-served trees (a public channel, a private feed, a stale cached index) and from a
mirror seeded by `icefloe export` that another nginx serves.
"""

import json
import os
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from clients.catalog import CatalogClient
from deploy import nginx
from harness.front import Front, credential, export, listed, wait_written
from harness.lxd import Lxc
from harness.processes import free_port
from harness.publish import move, new_image, next_serial, pass_all, publish
from harness.servers import RunningServer, client, tls, token
from server_api.tls import ensure_self_signed


def test_each_change_writes_every_channel_and_flavour_as_the_server_serves_it(tmp_path: Path):
    with RunningServer(tmp_path / "server") as server:
        image = new_image()
        serial = publish(server, image, tmp=tmp_path, to=("testing",)).serial
        wait_written(server)
        root = server.server_settings.static_root
        private, _ = credential(server, "testing", "incus")
        with httpx.Client(base_url=server.url, verify=tls(server)) as web:
            for tree, base in [("testing", "/channels/testing"), ("testing-incus", private)]:
                for name in ("index.json", "images.json"):
                    written = (root / tree / "current" / "streams" / "v1" / name).read_bytes()
                    assert written == web.get(f"{base}/streams/v1/{name}").content, tree
            assert serial in listed(
                (root / "testing-incus/current/streams/v1/images.json").read_bytes()
            )
            assert serial not in listed(
                (root / "active/current/streams/v1/images.json").read_bytes()
            )
        store = server.services.store
        files = json.loads((root / "testing/current/streams/v1/images.json").read_bytes())
        for product in files["products"].values():
            for item in product["versions"][serial]["items"].values():
                linked = root / "testing" / "current" / item["path"]
                assert linked.stat().st_ino == store.path(item["sha256"]).stat().st_ino
                assert linked.stat().st_mode & 0o044 == 0o044, "nginx's user reads it"


def test_a_superseded_tree_and_its_files_stay_for_the_grace(tmp_path: Path):
    """A host whose cached index of testing lists a version promoted since still finds its
    files in the testing tree for channel_file_grace_s; with 0 they go at once."""
    for grace, kept in ((3600, True), (0, False)):
        with RunningServer(tmp_path / f"server-{grace}", channel_file_grace_s=grace) as server:
            image = new_image()
            serial = publish(server, image, tmp=tmp_path, to=("testing",)).serial
            wait_written(server)
            tree = server.server_settings.static_root / "testing"
            before = os.readlink(tree / "current")
            old = json.loads((tree / "current/streams/v1/images.json").read_bytes())
            paths = [
                item["path"]
                for product in old["products"].values()
                for item in product["versions"][serial]["items"].values()
            ]
            catalog = client(server, server.token)
            pass_all(catalog, image, serial)
            move(catalog, image, serial, "active")
            catalog.close()
            wait_written(server)
            assert os.readlink(tree / "current") != before
            assert serial not in listed((tree / "current/streams/v1/images.json").read_bytes())
            assert (tree / before).exists() is kept
            for path in paths:
                assert (tree / "current" / path).exists() is kept, (grace, path)
                assert (server.server_settings.static_root / "active/current" / path).exists()


def test_a_killed_writer_leaves_nothing_the_next_one_does_not_clean(tmp_path: Path):
    state = tmp_path / "server"
    with RunningServer(state) as server:
        serial = publish(server, new_image(), tmp=tmp_path, to=("testing",)).serial
        wait_written(server)
    root = state / "static"
    # What a writer killed mid-way leaves: a half-written generation, a half-made link,
    # a half-copied file, and the generation of the trees it never finished.
    (root / "testing" / ".tmp-999-1" / "streams").mkdir(parents=True)
    (root / "testing" / ".tmp-current-1").symlink_to("999")
    (root / "files" / "testing" / ".tmp-abc-1").write_bytes(b"half")
    (root / ".tmp-generation-1").write_text("99")
    (root / "testing" / "998.manifest.json").write_bytes(b'{"etag": "", "files": []}')
    (root / "generation").write_text("0")
    with RunningServer(state) as server:
        wait_written(server)
        assert not list(root.glob("*/.tmp-*")) and not list(root.glob("files/*/.tmp-*"))
        assert not (root / "testing" / "998.manifest.json").exists()
        assert serial in listed((root / "testing/current/streams/v1/images.json").read_bytes())


def test_two_servers_share_one_static_dir(tmp_path: Path):
    """One writer at a time (the lock file): changes made through either server end up in
    the trees, whichever writes them."""
    state = tmp_path / "server"
    with RunningServer(state) as one, RunningServer(state) as two:
        serials = [
            publish(server, new_image(), tmp=tmp_path, to=("testing",)).serial
            for server in (one, two)
        ]
        for server in (one, two):
            wait_written(server)
        root = state / "static"
        assert set(serials) <= listed(
            (root / "testing/current/streams/v1/images.json").read_bytes()
        )
        assert not list(root.glob("*/.tmp-*")) and not list(root.glob(".tmp-*"))


def test_icefloe_export_writes_the_channel_tree(tmp_path: Path):
    with RunningServer(tmp_path / "server") as server:
        serial = publish(server, new_image(), tmp=tmp_path, to=("testing",)).serial
        dest = tmp_path / "export"
        export(server, "testing", dest)
        with httpx.Client(base_url=server.url, verify=tls(server)) as web:
            for name in ("index.json", "images.json"):
                feed = web.get(f"/channels/testing/streams/v1/{name}").content
                assert (dest / "streams/v1" / name).read_bytes() == feed
        catalog = json.loads((dest / "streams/v1/images.json").read_bytes())
        assert serial in listed((dest / "streams/v1/images.json").read_bytes())
        for product in catalog["products"].values():
            for version in product["versions"].values():
                for item in version["items"].values():
                    assert (dest / item["path"]).stat().st_size == item["size"]


def test_icefloe_export_to_a_place_it_cannot_write_says_so_in_one_line(tmp_path: Path):
    (tmp_path / "a-file").write_text("")
    with RunningServer(tmp_path / "server") as server:
        done = export(server, "active", tmp_path / "a-file" / "mirror", code=2)
    assert done.stderr.startswith("icefloe: cannot write ") and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.nginx
def test_nginx_serves_public_feeds_from_the_trees_and_private_ones_after_the_servers_check(
    fronted: tuple[RunningServer, Front], tmp_path: Path
):
    server, front = fronted
    serial = publish(server, new_image(), tmp=tmp_path, to=("testing",)).serial
    wait_written(server)
    root = server.server_settings.static_root
    private, credential_id = credential(server, "testing")
    with httpx.Client(base_url=front.url, verify=front.trust()) as web:
        public = web.get("/channels/testing/streams/v1/images.json")
        assert public.content == (root / "testing/current/streams/v1/images.json").read_bytes()
        assert public.headers["content-type"] == "application/json"
        mine = web.get(f"{private}/streams/v1/images.json")
        assert mine.status_code == 200 and serial in listed(mine.content)
        assert mine.content == (root / "testing-lxd/current/streams/v1/images.json").read_bytes()
        assert "last-modified" in mine.headers, "nginx sent the tree's file, not the server"
        item = next(
            item
            for product in json.loads(mine.content)["products"].values()
            for item in product["versions"][serial]["items"].values()
            if item["ftype"] == "squashfs"
        )
        got = web.get(f"{private}/{item['path']}")
        assert got.status_code == 200 and len(got.content) == item["size"]
        assert got.headers["etag"] != f'"{item["sha256"]}"', "nginx sent it, not the server"
        ranged = web.get(f"{private}/{item['path']}", headers={"Range": "bytes=0-9"})
        assert ranged.status_code == 206 and ranged.content == got.content[:10]

        operator = client(server, token(server, "operator"))
        operator._http.post(f"/api/v1/credentials/{credential_id}/revoke").raise_for_status()
        operator.close()
        assert web.get(f"{private}/streams/v1/images.json").status_code == 403
        assert web.get(f"{private}/{item['path']}").status_code == 403
        assert web.get("/_icefloe/store/").status_code == 404, "internal locations stay inside"


@pytest.mark.nginx
def test_uploads_stream_through_nginx(fronted: tuple[RunningServer, Front], tmp_path: Path):
    server, front = fronted
    settings = server.client_settings(server={"url": front.url, "ca": front.cert})
    catalog = CatalogClient(settings)
    try:
        image = new_image()
        serial = next_serial()
        publish(catalog, image, serial, tmp=tmp_path)
        assert catalog.version(image.name, serial).serial == serial
    finally:
        catalog.close()


# With LXD: the real `lxc` client against the trees nginx serves.


@pytest.mark.lxd
@pytest.mark.nginx
def test_lxc_launches_from_the_nginx_served_public_channel_and_a_private_feed(
    fronted: tuple[RunningServer, Front], lxc: Lxc, tmp_path: Path
):
    server, front = fronted
    image = new_image(arches=["x86_64"])
    _, public_fp = publish(server, image, build_in=tmp_path, to=("testing",))
    private_fp = publish(server, image, build_in=tmp_path, to=("testing", "active")).fingerprint
    wait_written(server)
    private, _ = credential(server, "active")
    lxc.took |= {public_fp, private_fp}
    lxc.add_remote("pub", f"{front.url}/channels/testing/", front.cert)
    lxc.add_remote("prv", f"{front.url}{private}/", front.cert)
    assert public_fp in lxc.images("pub") and private_fp in lxc.images("prv")
    assert f"{image.os}/one/default" in lxc.images("pub")[public_fp], "the default alias"

    name = f"icefloe-static-{uuid.uuid4().hex[:8]}"
    try:
        lxc("launch", f"pub:{public_fp}", name, timeout=300)
        info = json.loads(lxc("list", name, "--format", "json"))[0]
        assert info["status"] == "Running"
        assert info["config"]["volatile.base_image"] == public_fp
    finally:
        subprocess.run(["lxc", "delete", "--force", name], env=lxc.env, check=False)
    lxc("image", "copy", f"prv:{private_fp}", "local:", timeout=300)
    assert private_fp in lxc.images("local")


@pytest.mark.lxd
@pytest.mark.nginx
def test_lxc_with_a_stale_cached_index_still_gets_a_version_that_left_the_channel(
    fronted: tuple[RunningServer, Front], lxc: Lxc, tmp_path: Path
):
    """LXD keeps a remote's index for up to an hour: its host read testing while two
    versions were there; one was promoted since, and the host still copies it from
    testing by the cached index, from the superseded tree nginx still holds."""
    server, front = fronted
    image = new_image(arches=["x86_64"])
    (_, first), (promoted, second) = (
        publish(server, image, build_in=tmp_path, to=("testing",)),
        publish(server, image, build_in=tmp_path, to=("testing",)),
    )
    wait_written(server)
    lxc.took |= {first, second}
    lxc.add_remote("tst", f"{front.url}/channels/testing/", front.cert)
    lxc("image", "copy", f"tst:{first}", "local:", timeout=300)  # reads and caches the index
    catalog = client(server, server.token)
    pass_all(catalog, image, promoted)
    move(catalog, image, promoted, "active")
    catalog.close()
    wait_written(server)
    with httpx.Client(base_url=front.url, verify=front.trust()) as web:
        fresh = web.get("/channels/testing/streams/v1/images.json").content
    assert promoted not in listed(fresh), "the testing tree no longer lists it"
    lxc("image", "copy", f"tst:{second}", "local:", timeout=300)
    assert {first, second} <= set(lxc.images("local"))


def _export_active(server: RunningServer, dest: Path, tmp: Path) -> str:
    """A built version promoted to active, then `icefloe export --channel active dest`."""
    fingerprint = publish(
        server, new_image(arches=["x86_64"]), build_in=tmp, to=("testing", "active")
    ).fingerprint
    export(server, "active", dest)
    return fingerprint


@pytest.mark.lxd
def test_lxc_copies_from_a_mirror_seeded_by_icefloe_export(lxc: Lxc, tmp_path: Path):
    with RunningServer(tmp_path / "server") as server:
        fingerprint = _export_active(server, tmp_path / "mirror" / "www", tmp_path)
    lxc.took.add(fingerprint)
    mirror = tmp_path / "mirror"
    # Another nginx, as on another machine: a plain static site of the exported tree.
    cert, key = mirror / "mirror.crt", mirror / "mirror.key"
    ensure_self_signed(cert, key, "127.0.0.1")
    port = free_port()
    site = nginx.plain_site(f"127.0.0.1:{port}", cert, key, mirror / "www")
    with nginx.serving(site, mirror, f"https://127.0.0.1:{port}"):
        lxc.add_remote("mir", f"https://127.0.0.1:{port}/", cert)
        assert fingerprint in lxc.images("mir")
        lxc("image", "copy", f"mir:{fingerprint}", "local:", timeout=300)
    assert fingerprint in lxc.images("local")
