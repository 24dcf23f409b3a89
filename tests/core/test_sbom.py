"""Bills of materials from a package manifest, checked by the formats' own validators:
spdx-tools' parser and full validation for SPDX 2.3, cyclonedx-python-lib's strict JSON
schema validator for CycloneDX 1.5."""

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from spdx_tools.spdx.model.relationship import RelationshipType
from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from core.sbom import ImageBom, SbomFormat, cyclonedx_json, sbom_json, spdx_json

FINGERPRINT = "3f" * 32
CREATED = datetime(2026, 11, 26, 12, 29, 27, 123456, tzinfo=UTC)
PACKAGES = {
    "bash": "5.2.15-2+b7",
    "libc6": "2.36-9+deb12u9",
    "libc6:i386": "2.36-9+deb12u9",  # multiarch: the second copy, as dpkg_installed names it
    "libstdc++6": "12.2.0-14",
    "systemd": "1:252.33-1~deb12u1",  # an epoch, a tilde
    "tzdata": "2025b-0+deb12u1",
}


def bom(packages: dict[str, str] | None = None, **changes: Any) -> ImageBom:
    fields: dict[str, Any] = {
        "image": "debian:bookworm:cloud",
        "serial": "20261126-122927",
        "arch": "x86_64",
        "created_at": CREATED,
        "packages": PACKAGES if packages is None else packages,
        "fingerprint": FINGERPRINT,
    }
    return ImageBom(**(fields | changes))


def valid_spdx(data: bytes):
    document = JsonLikeDictParser().parse(json.loads(data))
    assert validate_full_spdx_document(document, "SPDX-2.3") == []
    return document


def valid_cyclonedx(data: bytes) -> dict:
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(data.decode()) is None
    return json.loads(data)


def expected() -> list[tuple[str, str, str]]:
    return [
        ("bash", "5.2.15-2+b7", "amd64"),
        ("libc6", "2.36-9+deb12u9", "amd64"),
        ("libc6", "2.36-9+deb12u9", "i386"),
        ("libstdc++6", "12.2.0-14", "amd64"),
        ("systemd", "1:252.33-1~deb12u1", "amd64"),
        ("tzdata", "2025b-0+deb12u1", "amd64"),
    ]


def test_spdx_validates_and_describes_the_image_containing_each_package_with_its_purl():
    document = valid_spdx(spdx_json(bom()))
    info = document.creation_info
    assert info.spdx_version == "SPDX-2.3"
    assert info.created == CREATED.replace(microsecond=0, tzinfo=None)
    assert info.document_namespace == (
        "urn:icefloe:sbom:debian:bookworm:cloud/20261126-122927/x86_64"
    )
    image, *debs = document.packages
    assert (image.spdx_id, image.name, image.version) == (
        "SPDXRef-Image",
        "debian:bookworm:cloud",
        "20261126-122927",
    )
    assert f"lxd-fingerprint: {FINGERPRINT}" in (image.comment or "")
    assert "arch: x86_64" in (image.comment or "")
    relations = {
        (r.spdx_element_id, r.relationship_type, r.related_spdx_element_id)
        for r in document.relationships
    }
    assert ("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, "SPDXRef-Image") in relations
    assert {(r[1], r[2]) for r in relations if r[0] == "SPDXRef-Image"} == {
        (RelationshipType.CONTAINS, d.spdx_id) for d in debs
    }
    raw = json.loads(spdx_json(bom()))
    assert raw["documentDescribes"] == ["SPDXRef-Image"]
    described = {"spdxElementId": "SPDXRef-DOCUMENT", "relatedSpdxElement": "SPDXRef-Image"}
    assert raw["relationships"][0] == described | {"relationshipType": "DESCRIBES"}
    found = []
    for deb in debs:
        [ref] = deb.external_references
        assert (ref.category.name, ref.reference_type) == ("PACKAGE_MANAGER", "purl")
        purl = PackageURL.from_string(ref.locator)
        assert (purl.type, purl.namespace, purl.name, purl.version) == (
            "deb",
            "debian",
            deb.name,
            deb.version,
        )
        assert deb.comment == f"arch: {purl.qualifiers['arch']}"
        found.append((deb.name, deb.version, purl.qualifiers["arch"]))
    assert found == expected()


def test_cyclonedx_validates_with_the_image_as_metadata_component_and_each_package_a_purl():
    doc = valid_cyclonedx(cyclonedx_json(bom()))
    assert (doc["bomFormat"], doc["specVersion"]) == ("CycloneDX", "1.5")
    assert doc["metadata"]["timestamp"] == "2026-11-26T12:29:27Z"
    image = doc["metadata"]["component"]
    assert (image["type"], image["name"], image["version"]) == (
        "container",
        "debian:bookworm:cloud",
        "20261126-122927",
    )
    props = {p["name"]: p["value"] for p in image["properties"]}
    assert props == {
        "icefloe:arch": "x86_64",
        "icefloe:debian-arch": "amd64",
        "icefloe:lxd-fingerprint": FINGERPRINT,
    }
    found = []
    for component in doc["components"]:
        purl = PackageURL.from_string(component["purl"])
        assert (purl.type, purl.namespace, purl.name, purl.version) == (
            "deb",
            "debian",
            component["name"],
            component["version"],
        )
        arch = purl.qualifiers["arch"]
        assert component["properties"] == [{"name": "icefloe:debian-arch", "value": arch}]
        found.append((component["name"], component["version"], arch))
    assert found == expected()
    assert doc["dependencies"] == [
        {"ref": image["bom-ref"], "dependsOn": [c["bom-ref"] for c in doc["components"]]}
    ]


def test_the_purls_are_debians_with_the_arch_qualifier():
    doc = json.loads(cyclonedx_json(bom({"bash": "5.2.15-2+b7", "systemd": "1:252"})))
    assert [c["purl"] for c in doc["components"]] == [
        "pkg:deb/debian/bash@5.2.15-2%2Bb7?arch=amd64",
        "pkg:deb/debian/systemd@1:252?arch=amd64",
    ]
    arm = json.loads(cyclonedx_json(bom({"bash": "5.2"}, arch="aarch64")))
    assert arm["components"][0]["purl"] == "pkg:deb/debian/bash@5.2?arch=arm64"


@pytest.mark.parametrize("fmt", list(SbomFormat))
def test_the_same_input_gives_the_same_bytes_and_another_arch_or_serial_other_ids(
    fmt: SbomFormat,
):
    first = sbom_json(bom(), fmt)
    shuffled = dict(reversed(list(PACKAGES.items())))
    same_moment = CREATED.astimezone(timezone(timedelta(hours=-5)))
    assert sbom_json(bom(shuffled, created_at=same_moment), fmt) == first
    naive = CREATED.replace(tzinfo=None)  # as SQLite gives it back: UTC
    assert sbom_json(bom(created_at=naive), fmt) == first

    def ident(data: bytes) -> str:
        doc = json.loads(data)
        return doc["documentNamespace"] if fmt is SbomFormat.spdx else doc["serialNumber"]

    others = {ident(sbom_json(bom(arch="i686"), fmt)), ident(sbom_json(bom(serial="x"), fmt))}
    assert ident(first) not in others and len(others) == 2


def test_an_empty_manifest_and_an_unknown_fingerprint_still_give_valid_documents():
    spdx = valid_spdx(spdx_json(bom({}, fingerprint=None)))
    assert [p.spdx_id for p in spdx.packages] == ["SPDXRef-Image"]
    assert [r.relationship_type for r in spdx.relationships] == [RelationshipType.DESCRIBES]
    assert "fingerprint" not in (spdx.packages[0].comment or "")
    cdx = valid_cyclonedx(cyclonedx_json(bom({}, fingerprint=None)))
    assert cdx["components"] == []
    assert "icefloe:lxd-fingerprint" not in {
        p["name"] for p in cdx["metadata"]["component"]["properties"]
    }


def test_the_validators_refuse_a_broken_document():
    """The checks above can fail: each validator finds a fault put in by hand."""
    spdx = json.loads(spdx_json(bom()))
    spdx["packages"][1]["SPDXID"] = "SPDXRef-bad_id"
    document = JsonLikeDictParser().parse(spdx)
    assert validate_full_spdx_document(document, "SPDX-2.3") != []
    cdx = json.loads(cyclonedx_json(bom()))
    cdx["components"][0]["arch"] = "amd64"  # no such property in CycloneDX 1.5
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(json.dumps(cdx)) is not None
