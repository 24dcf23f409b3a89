"""Rootfs deltas: a new version of an image carries an xdelta3 delta from the previous
version's squashfs, listed as the `squashfs.vcdiff` item with `delta_base`; LXD with the
previous version cached refreshes by downloading the delta, not the whole squashfs.

`refresh` is the whole LXD round (also bench/deltas.py's): cache version A by alias with
auto-update, publish B, `lxc image refresh`, and count the file bytes the server sent.
"""

import hashlib
import json
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import Session

from activities.builders.base import BuildJob, HostDirs
from activities.builders.registry import BUILDERS
from clients.catalog import CatalogClient
from core.arch import LxdArch
from core.catalog import ArchFiles, BuiltFile, Channel, VersionCreate
from core.spec import ImageSpec
from server_api.models import VersionArch
from tests.server.test_lxc_client import Lxc
from tests.support import DEBS, RunningServer, busybox_spec, http, move, next_serial

ARCH: LxdArch = "x86_64"
Built = list[tuple[BuiltFile, Path]]


def build(image: ImageSpec, serial: str, out: Path) -> Built:
    job = BuildJob(image, ARCH, serial, out / serial / ARCH)
    return BUILDERS[image.builder](job, HostDirs(DEBS, out))


def two_busyboxes() -> tuple[ImageSpec, ImageSpec]:
    """A new busybox image and a change to it: another network set-up, a few rootfs bytes."""
    image = busybox_spec(uuid.uuid4().hex[:8])
    return image, image.model_copy(update={"network": "none"})


def publish(catalog: CatalogClient, image: ImageSpec, serial: str, built: Built) -> str:
    """Upload and publish one arch's files: the new version's fingerprint."""
    for file, path in built:
        catalog.upload(path, file)
    files = [f for f, _ in built]
    req = VersionCreate(spec=image, serial=serial, arches=[ArchFiles(arch=ARCH, files=files)])
    return catalog.publish(req).arches[0].fingerprint


def without_delta(server: RunningServer, fingerprint: str) -> None:
    """Forget the delta the server made for one version arch, before it enters a channel:
    the version then reads as one published by a server that makes no deltas."""
    with Session(server.app.state.engine) as session:
        session.execute(
            update(VersionArch)
            .where(VersionArch.fingerprint == fingerprint)  # type: ignore[arg-type]
            .values(delta_base=None, delta_sha256=None, delta_size=None)
        )
        session.commit()


def served(server: RunningServer) -> dict[str, float]:
    """Feed file bytes the server sent, by kind (metadata, squashfs, squashfs.vcdiff)."""
    with http(server) as c:
        text = c.get("/metrics").text
    pattern = r'^icefloe_feed_file_bytes_total\{kind="([^"]+)"\} (\S+)$'
    return {kind: float(v) for kind, v in re.findall(pattern, text, re.M)}


def items(catalog: CatalogClient, url: str, image: ImageSpec, serial: str) -> dict[str, dict]:
    feed = catalog._http.get(f"{url}/streams/v1/images.json").json()
    pid = f"{image.os}:{image.release}:amd64:{image.variant}"
    return feed["products"][pid]["versions"][serial]["items"]


@dataclass
class Refresh:
    old: str  # fingerprints: the cached version's, the new version's, and after the refresh
    new: str
    refreshed: str
    squashfs_size: int  # the new version's
    delta_size: int | None
    sent: dict[str, float]  # file bytes the server sent for the refresh, by kind
    publish_s: float  # publishing B, its delta made included


def refresh(
    server: RunningServer,
    catalog: CatalogClient,
    lxc: Lxc,
    tmp: Path,
    specs: tuple[ImageSpec, ImageSpec],
    delta: bool = True,
) -> Refresh:
    """LXD (or Incus: `lxc` an Incus client) caches version A of `specs[0]` by alias with
    auto-update; B, built from `specs[1]` (the same image, changed), is published;
    `lxc image refresh` fetches it.
    `delta` False: B is published as by a server that makes no deltas."""
    alias, local = (f"icefloe-delta-{uuid.uuid4().hex[:8]}" for _ in range(2))
    image, changed = (s.model_copy(update={"aliases": [alias]}) for s in specs)
    old_serial, new_serial = next_serial(), next_serial()
    old = publish(catalog, image, old_serial, build(image, old_serial, tmp))
    move(catalog, image, old_serial, "testing")
    # The channel's own URL: fresh ones (the pipeline's) list no deltas. LXD keeps a feed an
    # hour by its URL, so its copy is dropped before each read.
    url = catalog.channel_url("testing")
    cached = lxc.cache / hashlib.sha256(url.encode()).hexdigest()
    shutil.rmtree(cached, ignore_errors=True)
    lxc.add_remote("src", url, server.server_settings.cert_path)
    try:
        lxc("image", "copy", f"src:{alias}", "local:", "--alias", local, "--auto-update")
        built = build(changed, new_serial, tmp)
        started = time.monotonic()
        new = publish(catalog, changed, new_serial, built)
        publish_s = time.monotonic() - started
        if not delta:
            without_delta(server, new)
        move(catalog, changed, new_serial, "testing")
        shutil.rmtree(cached, ignore_errors=True)  # let it read the new feed
        before = served(server)
        lxc("image", "refresh", local, timeout=300)
        after = served(server)
        refreshed = json.loads(lxc("image", "list", local, "--format", "json"))[0]["fingerprint"]
        listed = items(catalog, url, changed, new_serial)
        vcdiff = [i for i in listed.values() if i["ftype"] == "squashfs.vcdiff"]
        return Refresh(
            old,
            new,
            refreshed,
            listed["root.squashfs"]["size"],
            vcdiff[0]["size"] if vcdiff else None,
            {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)},
            publish_s,
        )
    finally:
        for name in (local, old):  # the refreshed image by its alias, A if it stayed
            subprocess.run([lxc.program, "image", "delete", name], env=lxc.env, capture_output=True)


def test_a_new_version_lists_a_delta_that_patches_the_old_squashfs_into_the_new(
    image_server: RunningServer, catalog: CatalogClient, operator: CatalogClient, tmp_path: Path
):
    image, changed = two_busyboxes()
    old_serial, new_serial = next_serial(), next_serial()
    old_built = build(image, old_serial, tmp_path)
    new_built = build(changed, new_serial, tmp_path)
    publish(catalog, image, old_serial, old_built)
    publish(catalog, changed, new_serial, new_built)
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

    with Session(image_server.app.state.engine) as session:  # the files static trees link
        assert (
            deltas[0]["sha256"] in image_server.app.state.feeds.get(session, Channel.testing).files
        )

    # The base leaves the channel: the delta is of no use to the channel's hosts, and goes.
    move(catalog, image, old_serial, "inactive")
    listed = items(catalog, url, changed, new_serial)
    assert [i["ftype"] for i in listed.values()].count("squashfs.vcdiff") == 0
    assert catalog._http.get(f"{url}/{deltas[0]['path']}").status_code == 404

    # gc takes the base's files; the delta stays while its own version keeps its files.
    store = image_server.app.state.store
    assert f"{image.name} {old_serial}" in operator.gc(grace_s=0).versions
    assert store.exists(deltas[0]["sha256"]) and not store.exists(old_built[1][0].sha256)
    assert "squashfs.vcdiff" not in json.dumps(items(catalog, url, changed, new_serial))
    move(catalog, changed, new_serial, "inactive")
    assert deltas[0]["sha256"] in operator.gc(grace_s=0).files


@pytest.mark.lxd
def test_lxd_refreshes_a_cached_image_by_the_delta(
    image_server: RunningServer, catalog: CatalogClient, tmp_path: Path
):
    lxc = Lxc(tmp_path / "lxc-conf")
    done = refresh(image_server, catalog, lxc, tmp_path, two_busyboxes())
    assert done.refreshed == done.new != done.old
    assert done.delta_size is not None
    assert done.sent.get("squashfs.vcdiff") == done.delta_size
    assert "squashfs" not in done.sent, f"the whole squashfs was sent too: {done.sent}"
