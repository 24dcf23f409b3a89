"""Feeds after a catalog change: only the images that changed are rendered again, and the
joined feed is byte for byte what a render from scratch gives."""

from pathlib import Path

from sqlmodel import Session

from clients.catalog import CatalogClient
from core.catalog import Channel, Flavour
from harness.publish import move, new_image, next_serial, publish
from harness.servers import RunningServer, http
from server_api.feeds import FeedCache, generation, render


def test_a_change_to_one_image_renders_only_that_image_again(
    image_server: RunningServer, catalog: CatalogClient, tmp_path: Path
):
    images = [new_image() for _ in range(3)]
    for image in images:
        serial = next_serial()
        publish(catalog, image, serial, tmp=tmp_path)
        move(catalog, image, serial, "testing")
    cache = FeedCache()
    with Session(image_server.services.engine) as session:
        for flavour in (None, Flavour.lxd):
            cache.get(session, Channel.testing, flavour)
        before = cache.images_rendered
        assert before >= 2 * len(images)

        changed = next_serial()
        publish(catalog, images[1], changed, tmp=tmp_path)
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


def test_products_carry_a_default_alias_and_lxd_requirements(
    image_server: RunningServer, catalog: CatalogClient, tmp_path: Path
):
    named, unnamed = (
        new_image(aliases=["named-one"], requirements={"nesting": "true"}),
        new_image(),
    )
    for image in (named, unnamed):
        serial = next_serial()
        publish(catalog, image, serial, tmp=tmp_path)
        move(catalog, image, serial, "testing")
    feed = http(image_server).get("/channels/testing/streams/v1/images.json").json()
    products = {p["os"]: p for p in feed["products"].values()}
    assert products[named.os]["aliases"] == "named-one"
    assert products[unnamed.os]["aliases"] == f"{unnamed.os}/one/default"
    for product in products.values():
        assert product["lxd_requirements"] == product["requirements"]
    assert products[named.os]["lxd_requirements"] == {"nesting": "true"}
