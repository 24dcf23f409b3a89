"""Package manifests over real HTTPS: published with a version's files, checked, listed in
the feeds as the `manifest` item, shown per version (API, page, CLI) with the differences
from the previous version, and collected with the version's files."""

import hashlib
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from cli.tables import version_page
from clients.catalog import CatalogClient, CatalogRejected
from core.catalog import FileType, TransitionRequest
from core.manifest import MANIFEST_MAX_BYTES
from core.spec import ImageSpec
from harness.publish import (
    NEW_MANIFEST,
    OLD_MANIFEST,
    manifest_file,
    move,
    new_image,
    next_serial,
    publish,
    upload,
)
from harness.servers import RunningServer, client, token


def items(catalog: CatalogClient, image: ImageSpec, serial: str, arch: str = "amd64") -> dict:
    feed = catalog._http.get("/channels/testing/streams/v1/images.json").json()
    product = feed["products"][f"{image.os}:{image.release}:{arch}:default"]
    return product["versions"][serial]["items"]


def test_a_version_lists_its_packages_and_the_changes_since_the_previous_one(
    image_server: RunningServer, catalog: CatalogClient, anonymous: httpx.Client, tmp_path: Path
):
    image = new_image()
    first, bare, last = next_serial(), next_serial(), next_serial()
    for serial, data in ((first, OLD_MANIFEST), (bare, None), (last, NEW_MANIFEST)):
        publish(catalog, image, serial, tmp=tmp_path, manifest=data)
        move(catalog, image, serial, "testing")

    shown = catalog.manifest(image.name, last)
    assert [a.arch for a in shown.arches] == ["i686", "x86_64"]
    x86 = shown.arches[1]
    assert [(p.name, p.version) for p in x86.packages or []] == [
        ("bash", "5.2.15-2+b7"),
        ("libc6", "2.36-9"),
        ("new-tool", "0.1"),
    ]
    assert x86.previous == first, "the version without a manifest is passed over"
    assert x86.diff is not None and x86.diff.summary() == "1 added, 1 removed, 1 changed"
    assert [(c.name, c.old, c.new) for c in x86.diff.changed] == [("bash", "5.1-6", "5.2.15-2+b7")]
    assert [p.name for p in x86.diff.added] == ["new-tool"]
    assert [p.name for p in x86.diff.removed] == ["gone"]
    oldest = catalog.manifest(image.name, first).arches[0]
    assert oldest.packages and oldest.previous is None and oldest.diff is None
    assert all(a.packages is None for a in catalog.manifest(image.name, bare).arches)

    files = {f.ftype: f for f in catalog.version(image.name, last).arches[0].files}
    manifest = files[FileType.manifest]
    assert manifest.name == "rootfs.manifest" and manifest.size == len(NEW_MANIFEST)
    assert FileType.manifest not in {
        f.ftype for f in catalog.version(image.name, bare).arches[0].files
    }

    # The feed: a `manifest` item beside the image's, served at its path like any file.
    listed = items(catalog, image, last)
    assert listed["manifest"] == {
        "ftype": "manifest",
        "path": f"files/{manifest.sha256}",
        "sha256": manifest.sha256,
        "size": len(NEW_MANIFEST),
    }
    assert {"lxd.tar.xz", "incus.tar.xz", "root.squashfs"} <= listed.keys()
    assert "manifest" not in items(catalog, image, bare)
    served = anonymous.get(f"/channels/testing/{listed['manifest']['path']}")
    assert served.status_code == 200 and served.content == NEW_MANIFEST
    for flavour in ("lxd", "incus"):
        operator = client(image_server, token(image_server, "operator"))
        body = {"name": f"m-{flavour}", "channel": "testing", "flavour": flavour}
        path = operator._http.post("/api/v1/credentials", json=body).json()["feed_path"]
        operator.close()
        private = anonymous.get(f"{path}/streams/v1/images.json").json()["products"]
        item = private[f"{image.os}:{image.release}:amd64:default"]["versions"][last]["items"]
        assert item["manifest"] == listed["manifest"], flavour
        assert anonymous.get(f"{path}/{item['manifest']['path']}").content == NEW_MANIFEST
    services = image_server.services
    with Session(services.engine) as session:
        services.static.write(session, services.feeds)
    for tree in ("testing", "testing-lxd", "testing-incus"):
        linked = services.static.root / tree / "current" / listed["manifest"]["path"]
        assert linked.read_bytes() == NEW_MANIFEST, tree

    # The page, and `icefloe show`'s lines.
    page = anonymous.get(f"/images/{image.name}/versions/{last}").text
    assert "<h2>Packages</h2>" in page
    assert f'href="/images/{image.name}/versions/{first}">{first}</a>' in page
    assert "1 added, 1 removed, 1 changed" in page and "5.1-6 → 5.2.15-2+b7" in page
    assert "All 3 packages" in page and "new-tool 0.1" in page
    assert "No package manifest." in anonymous.get(f"/images/{image.name}/versions/{bare}").text
    lines = version_page(catalog.version(image.name, last), [], None, packages=shown.arches)
    assert f"  3 packages; since {first}: 1 added, 1 removed, 1 changed" in lines
    assert anonymous.get(f"/api/v1/images/{image.name}/versions/{last}/manifest").json() == (
        shown.model_dump(mode="json")
    )


@pytest.mark.parametrize(
    ("manifest", "says"),
    [
        (b"bash 5.2\n", "line 1 is not `name<TAB>version`"),
        (b"bash\t5.2\n\xff\tx\n", "is UTF-8 text"),
        (b"bash\t5.2\nbash\t5.3\n", "lists package 'bash' again"),
        (b"a\t1\n" * (MANIFEST_MAX_BYTES // 4 + 1), f"over {MANIFEST_MAX_BYTES} bytes"),
    ],
)
def test_a_file_declared_as_a_manifest_that_is_not_one_is_422(
    catalog: CatalogClient, tmp_path: Path, manifest: bytes, says: str
):
    image, serial = new_image(arches=["x86_64"]), next_serial()
    with pytest.raises(CatalogRejected) as refused:
        publish(catalog, image, serial, tmp=tmp_path, manifest=manifest)
    assert refused.value.status_code == 422
    assert "arch x86_64: manifest" in str(refused.value) and says in str(refused.value)
    with pytest.raises(CatalogRejected) as missing:
        catalog.version(image.name, serial)
    assert missing.value.status_code == 404, "nothing was published"


def test_two_manifests_for_one_arch_and_another_manifest_for_a_version_are_refused(
    catalog: CatalogClient, tmp_path: Path
):
    image, serial = new_image(arches=["x86_64"]), next_serial()
    req = upload(catalog, image, serial, tmp=tmp_path, manifest=NEW_MANIFEST)
    twice = req.model_copy(deep=True)
    other, path = manifest_file(tmp_path, "x86_64", OLD_MANIFEST)
    catalog.upload(path, other)
    twice.arches[0].files.append(other)
    with pytest.raises(CatalogRejected, match="at most one manifest") as refused:
        catalog.publish(twice)
    assert refused.value.status_code == 422

    catalog.publish(req)
    assert catalog.publish(req).serial == serial, "the same request again is a no-op"
    changed = req.model_copy(deep=True)
    changed.arches[0].files[2] = other
    with pytest.raises(CatalogRejected, match="exists with other files") as conflict:
        catalog.publish(changed)
    assert conflict.value.status_code == 409


def test_gc_keeps_a_manifest_while_its_version_keeps_its_files(tmp_path: Path):
    """Own server: collecting with grace 0 would take other tests' files."""
    with RunningServer(tmp_path / "server", channel_file_grace_s=0) as server:
        publisher = client(server, server.token)
        operator = client(server, token(server, "operator"))
        image, serial = new_image(arches=["x86_64"]), next_serial()
        publish(publisher, image, serial, tmp=tmp_path, manifest=NEW_MANIFEST)
        move(publisher, image, serial, "testing")
        sha256 = hashlib.sha256(NEW_MANIFEST).hexdigest()
        assert sha256 not in operator.gc(grace_s=0).files
        assert server.services.store.exists(sha256)
        retire = TransitionRequest(to="inactive", reason="superseded")
        publisher.transition(image.name, serial, retire)
        assert sha256 in operator.gc(grace_s=0).files
        assert [a.packages for a in publisher.manifest(image.name, serial).arches] == [None]
        publisher.close()
        operator.close()
