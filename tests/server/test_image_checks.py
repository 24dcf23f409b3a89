"""Image checks and version inputs over real HTTPS: a pipeline that found nothing changed
records "checked at, unchanged since <serial>"; a version keeps what it was built from."""

from datetime import UTC, datetime

import httpx
import pytest

from clients.catalog import CatalogClient, CatalogRejected
from core.catalog import ImageCheckReport
from core.inputs import ArchInputs, VersionInputs
from harness.publish import new_image, next_serial, publish, upload

INPUTS = VersionInputs(
    spec_digest="0" * 64,
    arches={
        "x86_64": ArchInputs(items={"busybox-static_1.37.0-4_amd64.deb": "sha256:ab"}),
        "i686": ArchInputs(known=False),
    },
)


def check_path(image: str) -> str:
    return f"/api/v1/images/{image}/check"


def test_a_version_keeps_its_inputs_also_when_published_again(catalog: CatalogClient, tmp_path):
    image = new_image()
    req = upload(catalog, image, next_serial(), tmp=tmp_path)
    assert catalog.publish(req.model_copy(update={"inputs": INPUTS})).inputs == INPUTS
    assert catalog.publish(req).inputs == INPUTS  # the same version again, inputs unsaid
    assert catalog.version(image.name, req.serial).inputs == INPUTS
    assert [v.inputs for v in catalog.versions(image=image.name)] == [INPUTS]

    without = publish(catalog, image, tmp=tmp_path / "without")
    assert catalog.version(image.name, without.serial).inputs is None


def test_a_check_is_recorded_read_and_overwritten(catalog: CatalogClient, anonymous, tmp_path):
    image = new_image(arches=["x86_64"])
    assert catalog.image_check(image.name) is None
    old = publish(catalog, image, tmp=tmp_path / "old", to=("testing", "active")).serial
    assert anonymous.get(check_path(image.name)).status_code == 404
    before = datetime.now(UTC)
    first = catalog.record_check(image.name, ImageCheckReport(unchanged_since=old))
    assert (first.image, first.unchanged_since, first.workflow_id) == (image.name, old, None)
    assert first.checked_at >= before
    assert catalog.image_check(image.name) == first
    assert anonymous.get(check_path(image.name)).json()["unchanged_since"] == old

    new = publish(catalog, image, tmp=tmp_path / "new", to=("testing", "active")).serial
    report = ImageCheckReport(unchanged_since=new, workflow_id="refresh-1/icefloe:x")
    second = catalog.record_check(image.name, report)
    assert (second.unchanged_since, second.workflow_id) == (new, "refresh-1/icefloe:x")
    assert second.checked_at >= first.checked_at
    assert catalog.image_check(image.name) == second


def test_a_check_names_an_active_version_of_the_image(catalog: CatalogClient, tmp_path):
    image = new_image(arches=["x86_64"])
    with pytest.raises(CatalogRejected) as unknown_image:
        catalog.record_check(image.name, ImageCheckReport(unchanged_since="20261203-0001"))
    assert unknown_image.value.status_code == 404
    serial = publish(catalog, image, tmp=tmp_path, to=("testing",)).serial
    with pytest.raises(CatalogRejected) as unknown:
        catalog.record_check(image.name, ImageCheckReport(unchanged_since="20990101-0001"))
    assert unknown.value.status_code == 404
    assert "no version 20990101-0001" in str(unknown.value)
    with pytest.raises(CatalogRejected) as testing:
        catalog.record_check(image.name, ImageCheckReport(unchanged_since=serial))
    assert testing.value.status_code == 409
    assert f"{serial} is testing, not active" in str(testing.value)
    assert catalog.image_check(image.name) is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"unchanged_since": "yesterday"},
        {"unchanged_since": None},
        {"unchanged_since": "20261203-0001", "workflow_id": ""},
        {"unchanged_since": "20261203-0001", "workflow_id": "w" * 513},
        ["20261203-0001"],
        "not json",
    ],
)
def test_a_bad_check_is_a_422(catalog: CatalogClient, body):
    image = new_image().name
    sent = (
        catalog._http.put(check_path(image), content=body)
        if isinstance(body, str)
        else catalog._http.put(check_path(image), json=body)
    )
    assert sent.status_code == 422, sent.text


@pytest.mark.parametrize("image", ["no-colons", "a:b:C", "a:b:c:d"])
def test_a_bad_image_name_is_a_422(catalog: CatalogClient, image):
    body = {"unchanged_since": "20261203-0001"}
    assert catalog._http.put(check_path(image), json=body).status_code == 422
    assert catalog._http.get(check_path(image)).status_code == 422


def test_recording_a_check_needs_a_publisher_token(anonymous: httpx.Client, catalog, tmp_path):
    image = new_image(arches=["x86_64"])
    serial = publish(catalog, image, tmp=tmp_path, to=("testing", "active")).serial
    put = anonymous.put(check_path(image.name), json={"unchanged_since": serial})
    assert put.status_code == 401
    assert catalog.image_check(image.name) is None
