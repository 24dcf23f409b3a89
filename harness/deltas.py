"""Two versions of a busybox image built, published and refreshed, as the delta tests and
bench/deltas.py do: `refresh` is the whole LXD (or Incus) round."""

import hashlib
import json
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import update
from sqlmodel import Session

from clients.catalog import CatalogClient
from core.arch import LxdArch
from core.catalog import DeltaState, VersionView
from core.spec import ImageSpec
from harness.lxd import Lxc
from harness.publish import Built, build, busybox_spec, move, next_serial, publish
from harness.servers import RunningServer, http
from harness.waiting import wait_until
from server_api.models import VersionArch

ARCH: LxdArch = "x86_64"


def two_busyboxes() -> tuple[ImageSpec, ImageSpec]:
    """A new busybox image and a change to it: another network set-up, a few rootfs bytes."""
    image = busybox_spec(uuid.uuid4().hex[:8])
    return image, image.model_copy(update={"network": "none"})


class TwoVersions(NamedTuple):
    image: ImageSpec
    changed: ImageSpec
    old_serial: str
    new_serial: str
    old_built: Built
    new_built: Built


def two_built_versions(out: Path) -> TwoVersions:
    """Two busybox versions of a new image (two_busyboxes), built into `out`, not published."""
    image, changed = two_busyboxes()
    old_serial, new_serial = next_serial(), next_serial()
    return TwoVersions(
        image,
        changed,
        old_serial,
        new_serial,
        build(image, old_serial, out, ARCH),
        build(changed, new_serial, out, ARCH),
    )


def settled(catalog: CatalogClient, image: ImageSpec, serial: str) -> VersionView:
    """The version once the server has made its deltas, or found it could not."""

    def done() -> VersionView | None:
        view = catalog.version(image.name, serial)
        return view if all(a.delta != DeltaState.pending for a in view.arches) else None

    return wait_until(done, f"the deltas of {image.name} {serial} settled", 120, 0.1)


def without_delta(server: RunningServer, fingerprint: str) -> None:
    """Forget the delta the server made for one version arch, before it enters a channel:
    the version then reads as one published by a server that makes no deltas."""
    with Session(server.services.engine) as session:
        session.execute(
            update(VersionArch)
            .where(VersionArch.fingerprint == fingerprint)  # type: ignore[arg-type]
            .values(delta_state="none", delta_base=None, delta_sha256=None, delta_size=None)
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
    publish_s: float  # B's uploads and publish request, until it answered
    delta_s: float  # from then until the server had made (or given up on) B's delta


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
    old = publish(
        catalog, image, old_serial, files={ARCH: build(image, old_serial, tmp)}
    ).fingerprint
    move(catalog, image, old_serial, "testing")
    # The channel's own URL: fresh ones (the pipeline's) list no deltas. LXD keeps a feed an
    # hour by its URL, so its copy is dropped before each read.
    url = catalog.channel_url("testing")
    cached = lxc.cache / hashlib.sha256(url.encode()).hexdigest()
    shutil.rmtree(cached, ignore_errors=True)
    lxc.add_remote("src", url, server.server_settings.cert_path)
    try:
        lxc("image", "copy", f"src:{alias}", "local:", "--alias", local, "--auto-update")
        built = build(changed, new_serial, tmp, ARCH)
        started = time.monotonic()
        new = publish(catalog, changed, new_serial, files={ARCH: built}).fingerprint
        published = time.monotonic()
        settled(catalog, changed, new_serial)
        delta_s = time.monotonic() - published
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
            published - started,
            delta_s,
        )
    finally:
        for name in (local, old):  # the refreshed image by its alias, A if it stayed
            lxc.quietly("image", "delete", name)
