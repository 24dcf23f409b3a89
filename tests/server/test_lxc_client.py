"""The feeds as the real `lxc` client sees them: `lxc remote add` of a private feed,
`lxc image list` shows the active image with its alias, `lxc launch` by alias works (its
feed lists the image's package manifest and SBOMs too, items of ftypes LXD passes over),
and a version only in testing shows on the testing feed and never on the active one.

Every run uses new credentials, so every feed URL is new to LXD's one-hour cache.
Everything it creates (instance, cached images, remotes in a throwaway LXC_CONF) goes.
"""

import json
import uuid
from pathlib import Path

import pytest

from clients.catalog import CatalogClient
from core.sbom import SbomFormat
from harness.lxd import Lxc
from harness.publish import move, new_image, next_serial, pass_all, publish
from harness.servers import RunningServer, client, token

pytestmark = pytest.mark.lxd


def test_lxc_lists_and_launches_the_active_image_and_sees_testing_only_on_testing(
    image_server: RunningServer, catalog: CatalogClient, lxc: Lxc, tmp_path: Path
):
    alias = f"icefloe-lxc-{uuid.uuid4().hex[:8]}"
    image = new_image(arches=["x86_64"], aliases=[alias])
    active, testing = next_serial(), next_serial()
    active_fp = publish(catalog, image, active, build_in=tmp_path).fingerprint
    testing_fp = publish(catalog, image, testing, build_in=tmp_path).fingerprint
    move(catalog, image, active, "testing")
    pass_all(catalog, image, active)
    move(catalog, image, active, "active")
    move(catalog, image, testing, "testing")

    operator = client(image_server, token(image_server, "operator"))
    cert = image_server.server_settings.cert_path
    paths = {}
    for remote, channel, flavour in [
        ("act", "active", "lxd"),
        ("tst", "testing", "lxd"),
        ("inc", "active", "incus"),
    ]:
        body = {"name": remote, "channel": channel, "flavour": flavour}
        paths[remote] = operator._http.post("/api/v1/credentials", json=body).json()["feed_path"]
        lxc.add_remote(remote, image_server.url + paths[remote], cert)
    operator.close()
    # The feed LXD launches from lists the rootfs's package manifest and its two SBOMs too:
    # ftypes it passes over.
    feed = catalog._http.get(f"{paths['act']}/streams/v1/images.json").json()
    items = feed["products"][f"{image.os}:{image.release}:amd64:default"]["versions"][active]
    listed = {key: item["ftype"] for key, item in items["items"].items()}
    assert listed["manifest"] == "manifest"
    assert all(listed[fmt.ftype] == fmt.ftype for fmt in SbomFormat)

    on_active, on_testing = lxc.images("act"), lxc.images("tst")
    assert alias in on_active[active_fp] and testing_fp not in on_active
    assert alias in on_testing[testing_fp] and active_fp not in on_testing
    assert active_fp not in lxc.images("inc"), "an Incus feed has no lxd.tar.xz for LXD"

    name = f"icefloe-lxc-{uuid.uuid4().hex[:8]}"
    lxc.took.add(active_fp)  # the launch caches exactly this image (new: its serial is new)
    try:
        lxc("launch", f"act:{alias}", name, timeout=300)
        info = json.loads(lxc("list", name, "--format", "json"))[0]
        assert info["status"] == "Running"
        assert info["config"]["volatile.base_image"] == active_fp
    finally:
        lxc.quietly("delete", "--force", name)


def test_lxd_whose_cached_index_is_stale_still_gets_the_files(tmp_path: Path, lxc: Lxc):
    """LXD keeps a feed's index for up to an hour. Its host read `testing` while two
    versions were there; one was promoted since, and the host still copies it from
    `testing` by the cached index, as the server keeps serving a file for an hour after
    its version left the channel (a server of its own: the shared one serves no such grace)."""
    with RunningServer(tmp_path / "server") as server:
        catalog = client(server, server.token)
        image = new_image(arches=["x86_64"])
        first, promoted = next_serial(), next_serial()
        fingerprints = [
            publish(catalog, image, s, build_in=tmp_path).fingerprint for s in (first, promoted)
        ]
        for serial in (first, promoted):
            move(catalog, image, serial, "testing")
        url = catalog.channel_url("testing", fresh=uuid.uuid4().hex[:12])
        lxc.add_remote("tst", url, server.server_settings.cert_path)
        lxc.took.update(fingerprints)
        try:
            lxc("image", "copy", f"tst:{fingerprints[0]}", "local:")  # reads the index
            pass_all(catalog, image, promoted)
            move(catalog, image, promoted, "active")
            fresh = catalog._http.get(f"{url}/streams/v1/images.json").json()
            assert promoted not in json.dumps(fresh), "the testing feed no longer lists it"
            lxc("image", "copy", f"tst:{fingerprints[1]}", "local:")
            assert {
                i["fingerprint"] for i in json.loads(lxc("image", "list", "--format", "json"))
            } >= set(fingerprints)
        finally:
            catalog.close()
