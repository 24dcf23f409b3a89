"""The second guard at publish, over real HTTPS: a version whose definition and packages
equal those of the image's newest active version is refused with 409 and the serial it
equals, unless forced; anything changed, or anything that cannot be told, publishes."""

import pytest

from clients.catalog import CatalogClient, VersionUnchanged
from core.spec import ImageSpec
from harness.publish import (
    NEW_MANIFEST,
    OLD_MANIFEST,
    move,
    new_image,
    next_serial,
    pass_all,
    publish,
    upload,
)


@pytest.fixture
def image() -> ImageSpec:
    return new_image()


@pytest.fixture
def active(catalog: CatalogClient, image: ImageSpec, tmp_path) -> str:
    """The image's newest active version, with OLD_MANIFEST on both arches: its serial."""
    return publish(
        catalog, image, tmp=tmp_path / "active", manifest=OLD_MANIFEST, to=("testing", "active")
    ).serial


def serials(catalog: CatalogClient, image: ImageSpec) -> list[str]:
    return [v.serial for v in catalog.versions(image=image.name)]


def test_an_unchanged_version_is_refused_with_the_serial_it_equals(
    catalog: CatalogClient, image, active, tmp_path
):
    """New files (other fingerprints), the same packages and definition: the same image."""
    req = upload(catalog, image, next_serial(), tmp=tmp_path, manifest=OLD_MANIFEST)
    answer = catalog._http.post("/api/v1/versions", json=req.model_dump(mode="json"))
    assert answer.status_code == 409
    assert answer.json()["unchanged_since"] == active
    assert f"equal those of {active}, the newest active version" in answer.json()["detail"]
    with pytest.raises(VersionUnchanged) as refused:
        catalog.publish(req)
    assert (refused.value.status_code, refused.value.unchanged_since) == (409, active)
    assert serials(catalog, image) == [active]


def test_force_publishes_an_unchanged_version(catalog: CatalogClient, image, active, tmp_path):
    req = upload(catalog, image, next_serial(), tmp=tmp_path, manifest=OLD_MANIFEST)
    forced = catalog.publish(req.model_copy(update={"force": True}))
    assert (forced.serial, forced.state) == (req.serial, "created")
    assert catalog.publish(req).serial == req.serial  # published: the same request is a no-op


def test_the_active_version_published_again_is_still_a_no_op(
    catalog: CatalogClient, image, tmp_path
):
    active = publish(catalog, image, tmp=tmp_path, manifest=OLD_MANIFEST, to=("testing", "active"))
    assert catalog.publish(active.request).state == "active"


def test_changed_packages_publish(catalog: CatalogClient, image, active, tmp_path):
    req = upload(catalog, image, next_serial(), tmp=tmp_path, manifest=NEW_MANIFEST)
    assert catalog.publish(req).serial == req.serial


def test_one_arch_changed_publishes(catalog: CatalogClient, image, active, tmp_path):
    req = upload(catalog, image, next_serial(), tmp=tmp_path / "a", manifest=OLD_MANIFEST)
    changed = upload(catalog, image, req.serial, tmp=tmp_path / "b", manifest=NEW_MANIFEST)
    arches = [req.arches[0], *(a for a in changed.arches if a.arch != req.arches[0].arch)]
    assert catalog.publish(req.model_copy(update={"arches": arches})).serial == req.serial


def test_a_changed_definition_publishes(catalog: CatalogClient, image, active, tmp_path):
    edited = image.model_copy(update={"release_title": "One, edited"})
    req = upload(catalog, edited, next_serial(), tmp=tmp_path, manifest=OLD_MANIFEST)
    assert catalog.publish(req).serial == req.serial


def test_the_same_packages_listed_in_another_order_are_unchanged(
    catalog: CatalogClient, image, active, tmp_path
):
    """Packages are compared, not the manifest's bytes."""
    reordered = b"".join(reversed(OLD_MANIFEST.splitlines(keepends=True)))
    req = upload(catalog, image, next_serial(), tmp=tmp_path, manifest=reordered)
    with pytest.raises(VersionUnchanged):
        catalog.publish(req)


def test_without_a_manifest_nothing_can_be_told_so_it_publishes(
    catalog: CatalogClient, image, tmp_path
):
    old = publish(catalog, image, tmp=tmp_path / "old", to=("testing", "active")).serial
    new = publish(catalog, image, tmp=tmp_path / "new").serial
    assert serials(catalog, image) == [old, new]
    with_one = publish(catalog, image, tmp=tmp_path / "m", manifest=OLD_MANIFEST)
    assert with_one.serial in serials(catalog, image)  # the active one has none


def test_only_the_newest_active_version_counts(catalog: CatalogClient, image, active, tmp_path):
    """Equal to a version still in testing, or to an older active one: published."""
    newer = publish(catalog, image, tmp=tmp_path / "n", manifest=NEW_MANIFEST, to=("testing",))
    like_testing = upload(catalog, image, next_serial(), tmp=tmp_path / "t", manifest=NEW_MANIFEST)
    assert catalog.publish(like_testing).serial == like_testing.serial
    pass_all(catalog, image, newer.serial)
    move(catalog, image, newer.serial, "active")
    like_older = upload(catalog, image, next_serial(), tmp=tmp_path / "o", manifest=OLD_MANIFEST)
    assert catalog.publish(like_older).serial == like_older.serial
    like_newest = upload(catalog, image, next_serial(), tmp=tmp_path / "l", manifest=NEW_MANIFEST)
    with pytest.raises(VersionUnchanged) as refused:
        catalog.publish(like_newest)
    assert refused.value.unchanged_since == newer.serial


def test_other_arches_publish(catalog: CatalogClient, image, active, tmp_path):
    """One arch of the two the active version has: not the same version."""
    req = upload(catalog, image, next_serial(), tmp=tmp_path, manifest=OLD_MANIFEST)
    one = req.model_copy(update={"arches": req.arches[:1]})
    assert [a.arch for a in catalog.publish(one).arches] == [req.arches[0].arch]
