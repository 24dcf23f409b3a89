"""Feeds after a catalog change: only the images that changed are rendered again, and the
joined feed is byte for byte what a render from scratch gives."""

from pathlib import Path

from sqlmodel import Session

from clients.catalog import CatalogClient
from core.catalog import Channel, Flavour
from server_api.feeds import FeedCache, generation, render
from tests.support import RunningServer, move, new_image, next_serial, publish_fake


def test_a_change_to_one_image_renders_only_that_image_again(
    image_server: RunningServer, catalog: CatalogClient, tmp_path: Path
):
    images = [new_image() for _ in range(3)]
    for image in images:
        serial = next_serial()
        publish_fake(catalog, tmp_path, image, serial)
        move(catalog, image, serial, "testing")
    cache = FeedCache()
    with Session(image_server.app.state.engine) as session:
        for flavour in (None, Flavour.lxd):
            cache.get(session, Channel.testing, flavour)
        before = cache.images_rendered
        assert before >= 2 * len(images)

        changed = next_serial()
        publish_fake(catalog, tmp_path, images[1], changed)
        move(catalog, images[1], changed, "testing")
        for flavour in (None, Flavour.lxd):
            feed = cache.get(session, Channel.testing, flavour)
            assert changed in feed.images.decode()
            fresh = render(session, Channel.testing, flavour, generation(session))
            assert (feed.images, feed.index, feed.etag, feed.files) == (
                fresh.images,
                fresh.index,
                fresh.etag,
                fresh.files,
            )
        assert cache.images_rendered - before == 2, "one image, once per feed"
