"""`icefloe verify` finds the image as the real `lxc` client does: through a remote (its URL,
its pinned certificate, the alias resolved by the client from the feed) and in the host's own
store (by alias or a fingerprint's start, with the feed it was copied from and the
certificate LXD kept with it). A busybox build published to the shared server; the images the
test copies are deleted afterwards."""

import uuid
from pathlib import Path

import pytest

from clients.attestations import server_base
from clients.catalog import CatalogClient
from clients.imagestore import ImageLookupFailed, ImageStore
from harness.lxd import Lxc
from harness.publish import busybox_spec, publish
from harness.servers import RunningServer


@pytest.mark.lxd
@pytest.mark.debs
def test_an_image_is_found_through_a_remote_and_in_the_host_store(
    image_server: RunningServer,
    catalog: CatalogClient,
    lxc: Lxc,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    alias = f"icefloe-verify-{uuid.uuid4().hex[:8]}"
    image = busybox_spec(f"v{uuid.uuid4().hex[:6]}", aliases=[alias])
    fingerprint = publish(catalog, image, build_in=tmp_path, to=["testing", "active"]).fingerprint
    feed = catalog.channel_url("active", fresh=uuid.uuid4().hex[:12])
    lxc.add_remote("ice", feed, image_server.server_settings.cert_path)
    monkeypatch.setenv("LXD_CONF", str(lxc.conf))  # the user's `lxc` config, as ImageStore reads it
    store = ImageStore()
    cert = image_server.server_settings.cert_path.read_text()

    remote = store.find(f"ice:{alias}")
    assert (remote.fingerprint, remote.remote, remote.feed) == (fingerprint, "ice", feed)
    assert remote.certificate == cert and remote.architecture == "x86_64"
    assert server_base(remote.feed or "") == image_server.url

    local_alias = f"{alias}-here"
    lxc.took.add(fingerprint)
    lxc("image", "copy", f"ice:{alias}", "local:", "--alias", local_alias)
    for ref in (local_alias, f"local:{local_alias}", fingerprint[:12], f"local:{fingerprint}"):
        here = store.find(ref)
        assert (here.fingerprint, here.remote) == (fingerprint, "local")
        assert here.aliases == [local_alias]
        assert here.feed is not None and server_base(here.feed) == image_server.url, here
        assert here.certificate is not None and here.certificate.strip() == cert.strip()

    with pytest.raises(ImageLookupFailed, match="has no image with alias or fingerprint"):
        store.find(f"{alias}-nowhere")
    with pytest.raises(ImageLookupFailed, match="no remote 'elsewhere'"):
        store.find("elsewhere:x")
    with pytest.raises(ImageLookupFailed, match="names no image"):
        store.find("ice:")
    with pytest.raises(ImageLookupFailed, match=f"ice:{alias}-nowhere"):
        store.find(f"ice:{alias}-nowhere")


def test_a_feed_url_names_its_server():
    for url in (
        "https://h:8443/channels/active",
        "https://h:8443/channels/testing/fresh/abc/",
        "https://h:8443/feeds/iflf_secret/",
        "https://h:8443/",
        "https://h:8443",
    ):
        assert server_base(url) == "https://h:8443", url
    assert server_base("https://h/icefloe/channels/active") == "https://h/icefloe"
