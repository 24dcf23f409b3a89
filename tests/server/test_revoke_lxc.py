"""A revocation as hosts see it, through the project's nginx in front of the server: once
`revoke` answers, the public channel's static tree, a private feed and the server itself
no longer list the version nor serve its files (a host whose cached index still lists it
fails to fetch it), and the real `lxc` client, reading the feed afresh, launches the
restored previous version by its alias. Real busybox images, real LXD, real nginx."""

import json
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from harness.front import Front, credential, listed, nginx_front, wait_written
from harness.lxd import Lxc
from harness.publish import Published, new_image, publish
from harness.servers import RunningServer, client, http, token

pytestmark = [pytest.mark.lxd, pytest.mark.nginx]


@pytest.fixture
def front(tmp_path: Path) -> Iterator[tuple[RunningServer, Front]]:
    """One active version per image, so the restored one is what the alias names; the
    default hour of grace for files of versions that merely left a channel."""
    with (
        RunningServer(tmp_path / "server", accel_redirect=True, keep_active=1) as server,
        nginx_front(server, tmp_path / "nginx") as nginx,
    ):
        yield server, nginx


def test_a_revoked_version_is_gone_from_every_feed_and_lxc_launches_the_one_before(
    front: tuple[RunningServer, Front], lxc: Lxc, tmp_path: Path
):
    server, nginx = front
    alias = f"icefloe-revoke-{uuid.uuid4().hex[:8]}"
    image, other = new_image(arches=["x86_64"], aliases=[alias]), new_image(arches=["x86_64"])
    good, bad, unrelated = (  # a title of its own: none is unchanged since another
        publish(
            server,
            spec.model_copy(update={"release_title": name}),
            build_in=tmp_path / name,
            to=("testing", "active"),
        )
        for spec, name in ((image, "good"), (image, "bad"), (other, "other"))
    )
    private, _ = credential(server, "active")
    wait_written(server)
    web = httpx.Client(base_url=nginx.url, verify=nginx.trust())

    def files(published: Published) -> set[str]:
        return {f.sha256 for a in published.view.arches for f in a.files}

    # Its own files: one it shares with a listed version (the same manifest, a rootfs built
    # alike) stays. Its metadata, which names its serial, is always its own.
    bad_files = files(bad) - files(good) - files(unrelated)
    assert bad.view.arches[0].files[0].sha256 in bad_files
    # A host that read the private feed before: its LXD keeps that index for an hour.
    lxc.add_remote("before", nginx.url + private, nginx.cert)
    lxc.took.update({unrelated.fingerprint, bad.fingerprint, good.fingerprint})
    lxc("image", "copy", f"before:{unrelated.fingerprint}", "local:", timeout=300)
    for base in ("/channels/active", private):
        assert bad.serial in listed(web.get(f"{base}/streams/v1/images.json").content)

    with closing(client(server, token(server, "operator", "ops-bob"))) as ops:
        done = ops.revoke(image.name, bad.serial, "kernel panic on boot")
    assert done.restored is not None and done.restored.serial == good.serial
    # The server itself (a fresh URL: its answer is the feed, not nginx's redirect to the
    # tree), and through nginx the public channel's static tree and the private feed.
    fresh = f"/channels/active/fresh/{uuid.uuid4().hex[:8]}"
    with http(server) as direct:
        for c, base in ((direct, fresh), (web, "/channels/active"), (web, private)):
            shown = listed(c.get(f"{base}/streams/v1/images.json").content)
            assert bad.serial not in shown and good.serial in shown, (c.base_url, base)
            for sha in bad_files:
                assert c.get(f"{base}/files/{sha}").status_code == 404, (c.base_url, base, sha)
    web.close()
    with pytest.raises(AssertionError, match=r"404|Not Found|not found"):
        lxc("image", "copy", f"before:{bad.fingerprint}", "local:", timeout=300)

    lxc.add_remote("after", nginx.url + credential(server, "active")[0], nginx.cert)
    assert alias in lxc.images("after")[good.fingerprint]
    assert bad.fingerprint not in lxc.images("after")
    name = f"icefloe-revoke-{uuid.uuid4().hex[:8]}"
    try:
        lxc("launch", f"after:{alias}", name, timeout=300)
        info = json.loads(lxc("list", name, "--format", "json"))[0]
        assert info["status"] == "Running"
        assert info["config"]["volatile.base_image"] == good.fingerprint
    finally:
        lxc.quietly("delete", "--force", name)
