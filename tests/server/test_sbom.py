"""A version's bills of materials over real HTTPS: one per arch from its package manifest,
SPDX 2.3 (the default) or CycloneDX 1.5, valid by the formats' own validators, as public as
the manifest route, and linked per arch from the version page. Made and stored at publish:
listed in every feed as two items (the bytes at their path are the API's), linked into the
static trees, collected by gc with the version; made on request for a version published
before they were stored, the same bytes."""

import hashlib
import json
import re
from pathlib import Path

import httpx
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
from sqlalchemy import update
from sqlmodel import Session, col

from clients.catalog import CatalogClient
from core.catalog import TransitionRequest
from core.manifest import parse_manifest
from core.sbom import SbomFormat
from harness.front import credential
from harness.publish import NEW_MANIFEST, move, new_image, next_serial, publish
from harness.servers import RunningServer, client, http, token
from server_api.models import VersionArch
from tests.support import sign_in

SPDX = "application/spdx+json"
CYCLONEDX = "application/vnd.cyclonedx+json"


def api(image: str, serial: str, arch: str) -> str:
    return f"/api/v1/images/{image}/versions/{serial}/sbom/{arch}"


def assert_valid(fmt: SbomFormat, body: bytes) -> None:
    """By the format's own validator: spdx-tools' or cyclonedx-python-lib's strict schema."""
    if fmt is SbomFormat.spdx:
        document = JsonLikeDictParser().parse(json.loads(body))
        assert validate_full_spdx_document(document, "SPDX-2.3") == []
    else:
        assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(body.decode()) is None


def sbom_items(feed: httpx.Response, image: str, serial: str) -> dict[str, dict]:
    """Debian arch -> the version's items in `feed` (an images.json) whose ftype is an SBOM's."""
    os, release, _ = image.split(":")
    found = {}
    for product in feed.json()["products"].values():
        if (product["os"], product["release"]) == (os, release) and serial in product["versions"]:
            items = product["versions"][serial]["items"]
            ftypes = {fmt.ftype for fmt in SbomFormat}
            found[product["arch"]] = {k: i for k, i in items.items() if i["ftype"] in ftypes}
    return found


@pytest.fixture(scope="module")
def versions(catalog: CatalogClient, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(image, a serial with a manifest of each arch, a serial without manifests)."""
    tmp = tmp_path_factory.mktemp("sbom")
    image, listed, bare = new_image(), next_serial(), next_serial()
    publish(catalog, image, listed, tmp=tmp, manifest=NEW_MANIFEST)
    publish(catalog, image, bare, tmp=tmp)
    for serial in (listed, bare):
        move(catalog, image, serial, "testing")
    return image.name, listed, bare


def test_each_arch_has_an_spdx_and_a_cyclonedx_document_of_its_packages(
    versions: tuple, catalog: CatalogClient, anonymous: httpx.Client
):
    image, serial, _ = versions
    fingerprints: dict[str, str] = {
        a.arch: a.fingerprint for a in catalog.version(image, serial).arches
    }
    assert sorted(fingerprints) == ["i686", "x86_64"]
    packages = parse_manifest(NEW_MANIFEST)
    for arch, debian in (("x86_64", "amd64"), ("i686", "i386")):
        spdx = anonymous.get(api(image, serial, arch))
        assert spdx.status_code == 200, spdx.text
        assert spdx.headers["content-type"] == SPDX, "SPDX is the default"
        assert anonymous.get(api(image, serial, arch), params={"format": "spdx"}).content == (
            spdx.content
        )
        assert anonymous.get(api(image, serial, debian)).content == spdx.content, "Debian's name"
        assert anonymous.get(api(image, serial, arch)).content == spdx.content, "same bytes"
        document = JsonLikeDictParser().parse(spdx.json())
        assert validate_full_spdx_document(document, "SPDX-2.3") == []
        described, *debs = document.packages
        assert (described.name, described.version) == (image, serial)
        assert f"lxd-fingerprint: {fingerprints[arch]}" in (described.comment or "")
        assert {(d.name, d.version) for d in debs} == set(packages.items())
        for deb in debs:
            purl = PackageURL.from_string(deb.external_references[0].locator)
            assert (purl.type, purl.namespace, purl.name, purl.version) == (
                "deb",
                "debian",
                deb.name,
                deb.version,
            )
            assert purl.qualifiers == {"arch": debian}

        cdx = anonymous.get(api(image, serial, arch), params={"format": "cyclonedx"})
        assert cdx.status_code == 200 and cdx.headers["content-type"] == CYCLONEDX
        assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(cdx.text) is None
        bom = cdx.json()
        component = bom["metadata"]["component"]
        assert (component["name"], component["version"]) == (image, serial)
        assert {"name": "icefloe:lxd-fingerprint", "value": fingerprints[arch]} in (
            component["properties"]
        )
        assert {(c["name"], c["version"]) for c in bom["components"]} == set(packages.items())
        arches = {PackageURL.from_string(c["purl"]).qualifiers["arch"] for c in bom["components"]}
        assert arches == {debian}


def test_every_feed_lists_both_documents_of_each_arch_with_a_manifest_and_serves_them(
    versions: tuple, image_server: RunningServer, anonymous: httpx.Client
):
    """The public feed and a private one of each flavour: two items per arch, their bytes
    (at their path, and in the static trees) the API's, valid; none without a manifest."""
    image, serial, bare = versions
    feeds = ["/channels/testing"] + [
        credential(image_server, "testing", f)[0] for f in ("lxd", "incus")
    ]
    with Session(image_server.services.engine) as session:
        image_server.services.static.write(session, image_server.services.feeds)
    trees = [
        image_server.services.static.root / t / "current"
        for t in ("testing", "testing-lxd", "testing-incus")
    ]
    for base, tree in zip(feeds, trees, strict=True):
        feed = anonymous.get(f"{base}/streams/v1/images.json")
        listed = sbom_items(feed, image, serial)
        assert sorted(listed) == ["amd64", "i386"], base
        for debian, items in listed.items():
            assert sorted(items) == ["sbom.cdx.json", "sbom.spdx.json"], base
            for fmt in SbomFormat:
                body = anonymous.get(api(image, serial, debian), params={"format": fmt}).content
                sha256 = hashlib.sha256(body).hexdigest()
                assert items[fmt.ftype] == {
                    "ftype": fmt.ftype,
                    "path": f"files/{sha256}",
                    "sha256": sha256,
                    "size": len(body),
                }, (base, debian)
                served = anonymous.get(f"{base}/{items[fmt.ftype]['path']}")
                assert served.status_code == 200 and served.content == body, (base, debian)
                assert (tree / items[fmt.ftype]["path"]).read_bytes() == body, tree
                assert_valid(fmt, served.content)
        assert sbom_items(feed, image, bare) == {"amd64": {}, "i386": {}}, "no manifest, no SBOM"


def test_a_version_published_before_they_were_stored_gets_them_made_the_same(
    image_server: RunningServer, catalog: CatalogClient, anonymous: httpx.Client, tmp_path: Path
):
    """Its rows name no stored document (as the migration leaves them): the route makes them
    from the manifest when asked, byte for byte what the publish stored."""
    image, serial = new_image(arches=["x86_64"]), next_serial()
    publish(catalog, image, serial, tmp=tmp_path, manifest=NEW_MANIFEST, to=["testing"])
    path = api(image.name, serial, "x86_64")
    stored = {fmt: anonymous.get(path, params={"format": fmt}).content for fmt in SbomFormat}
    (arch,) = catalog.version(image.name, serial).arches
    fingerprint = arch.fingerprint
    # The stored files are what the route serves: it reads no manifest for them.
    manifest = image_server.services.store.path(hashlib.sha256(NEW_MANIFEST).hexdigest())
    aside = manifest.rename(manifest.with_name("aside"))
    try:
        for fmt, body in stored.items():
            assert anonymous.get(path, params={"format": fmt}).content == body, fmt
    finally:
        aside.rename(manifest)
    columns = ("sbom_spdx_sha256", "sbom_spdx_size", "sbom_cdx_sha256", "sbom_cdx_size")
    with Session(image_server.services.engine) as session:
        session.execute(
            update(VersionArch)
            .where(col(VersionArch.fingerprint) == fingerprint)
            .values(dict.fromkeys(columns))
        )
        session.commit()
    for fmt, body in stored.items():
        made = anonymous.get(path, params={"format": fmt})
        assert made.status_code == 200 and made.content == body, fmt
        assert image_server.services.store.exists(hashlib.sha256(body).hexdigest())


def test_gc_collects_the_documents_with_their_version_and_not_before(tmp_path: Path):
    """Own server: collecting with grace 0 would take other tests' files."""
    with RunningServer(tmp_path / "server", channel_file_grace_s=0) as server:
        publisher = client(server, server.token)
        operator = client(server, token(server, "operator"))
        image, serial = new_image(arches=["x86_64"]), next_serial()
        publish(publisher, image, serial, tmp=tmp_path, manifest=NEW_MANIFEST, to=["testing"])
        path = api(image.name, serial, "x86_64")
        with http(server) as anonymous:
            documents = {
                hashlib.sha256(anonymous.get(path, params={"format": fmt}).content).hexdigest()
                for fmt in SbomFormat
            }
            collected = set(operator.gc(grace_s=0).files)
            assert not documents & collected, "a listed version keeps them"
            assert all(server.services.store.exists(sha) for sha in documents)
            publisher.transition(image.name, serial, TransitionRequest(to="inactive", reason="old"))
            assert documents <= set(operator.gc(grace_s=0).files)
            assert not any(server.services.store.exists(sha) for sha in documents)
            gone = anonymous.get(path)
            assert gone.status_code == 404 and "were deleted" in gone.json()["detail"]
        publisher.close()
        operator.close()


def test_an_unknown_image_version_or_arch_and_an_arch_without_a_manifest_are_404(
    versions: tuple, anonymous: httpx.Client
):
    image, serial, bare = versions
    for path, says in (
        (api("nope:nope:nope", serial, "x86_64"), f"no version {serial} of image nope:nope:nope"),
        (api(image, "19990101-0000", "x86_64"), f"no version 19990101-0000 of image {image}"),
        (api(image, serial, "aarch64"), f"version {serial} of image {image} has no arch aarch64"),
        (api(image, serial, "sparc"), f"version {serial} of image {image} has no arch sparc"),
        (
            api(image, bare, "x86_64"),
            f"version {bare} of image {image} was published without a package manifest of x86_64",
        ),
    ):
        for fmt in ("spdx", "cyclonedx"):
            answer = anonymous.get(path, params={"format": fmt})
            assert answer.status_code == 404, (path, answer.status_code)
            assert answer.json()["detail"] == says


def test_a_format_other_than_spdx_or_cyclonedx_is_422(versions: tuple, anonymous: httpx.Client):
    image, serial, _ = versions
    for fmt in ("xml", "SPDX", ""):
        answer = anonymous.get(api(image, serial, "x86_64"), params={"format": fmt})
        assert answer.status_code == 422, fmt
        assert "'spdx' or 'cyclonedx'" in answer.text


def test_the_version_page_links_both_documents_of_each_arch_with_a_manifest(
    versions: tuple, anonymous: httpx.Client
):
    image, serial, bare = versions
    page = anonymous.get(f"/images/{image}/versions/{serial}").text
    links = re.findall(r'<a href="([^"]*/sbom/[^"]*)" type="([^"]*)">', page)
    base = f"/images/{image}/versions/{serial}/sbom"
    assert links == [
        (f"{base}/i686?format=spdx", SPDX),
        (f"{base}/i686?format=cyclonedx", CYCLONEDX),
        (f"{base}/x86_64?format=spdx", SPDX),
        (f"{base}/x86_64?format=cyclonedx", CYCLONEDX),
    ]
    for href, media in links:
        link = anonymous.get(href)
        assert link.status_code == 200 and link.headers["content-type"] == media, href
        assert link.content == anonymous.get(f"/api/v1{href}").content, "the API's bytes"
    assert "/sbom/" not in anonymous.get(f"/images/{image}/versions/{bare}").text
    missing = anonymous.get(f"{base}/aarch64?format=spdx")
    assert missing.status_code == 404 and "has no arch aarch64" in missing.text


def test_with_public_feeds_off_the_api_needs_a_token_and_the_page_link_the_login_cookie(
    tmp_path: Path,
):
    with RunningServer(tmp_path / "state", public_feeds=False) as server:
        image, serial = new_image(arches=["x86_64"]), next_serial()
        publish(server, image, serial, tmp=tmp_path, manifest=NEW_MANIFEST, to=["testing"])
        path = api(image.name, serial, "x86_64")
        page_link = path.removeprefix("/api/v1")
        reader = token(server, "reader", "dora")
        with http(server) as browser:
            assert browser.get(path).status_code == 401
            assert browser.get(page_link).status_code == 401
            allowed = browser.get(path, headers={"Authorization": f"Bearer {reader}"})
            assert allowed.status_code == 200 and allowed.headers["content-type"] == SPDX
            sign_in(browser, reader, page_link)
            shown = browser.get(page_link)
            assert shown.status_code == 200 and shown.content == allowed.content
            assert browser.get(path).status_code == 401, "the cookie is for pages only"
            assert json.loads(shown.content)["spdxVersion"] == "SPDX-2.3"
