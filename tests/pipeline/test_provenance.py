"""A real pipeline's attestations: the build statement names the hosts the arch workers
built on, the builder's version, the workflow and the .deb each arch unpacked; the test
statement each check's result with the LXD daemon it ran on."""

import base64
import json
import socket
import ssl

import httpx
import pytest

from clients.catalog import CatalogClient
from clients.lxd import connect_lxd, server_version
from core.config import REPO_DIR, Settings
from core.images import load_image
from core.pipeline import PipelineInput
from core.provenance import icefloe_version
from workflows.trigger import new_serial, start_pipeline

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]


def statements(settings: Settings, image: str, serial: str) -> dict[str, dict]:
    path = f"/api/v1/images/{image}/versions/{serial}/attestations"
    ca = ssl.create_default_context(cafile=str(settings.server.ca))
    with httpx.Client(base_url=settings.server.url, verify=ca) as c:
        answer = c.get(path).json()["attestations"]
    return {a["kind"]: json.loads(base64.b64decode(a["envelope"]["payload"])) for a in answer}


async def test_a_pipeline_to_active_signs_where_and_from_what_it_was_built_and_tested(
    temporal, workers, catalog: CatalogClient, settings: Settings
) -> None:
    image = load_image(REPO_DIR / "images" / "busybox.yaml")
    image = image.model_copy(update={"arches": ["x86_64", "i686"]})
    serial = new_serial()
    handle = await start_pipeline(temporal, PipelineInput(spec=image, serial=serial, force=True))
    assert (await handle.result()).state == "active"

    said = statements(settings, image.name, serial)
    run = said["build"]["predicate"]["runDetails"]
    assert run["builder"]["version"]["busybox"] == f"icefloe {icefloe_version()}"
    assert run["metadata"]["invocationId"] == handle.id
    hosts = {b["name"]: b.get("content") for b in run["byproducts"]}
    for arch in ("amd64", "i386"):
        assert base64.b64decode(hosts[f"{arch}/build-host"]).decode() == socket.gethostname()
    deps = said["build"]["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert {d["name"] for d in deps} == {
        "amd64/busybox-static",
        "i386/busybox-static",
        "amd64/manifest",
        "i386/manifest",
    }
    daemon = server_version(connect_lxd(settings))
    results = said["test"]["predicate"]["results"]
    assert len(results) == 2 * len(image.required_checks)
    assert {r["server"] for r in results} == {daemon} and daemon.startswith("lxd 5.")
    assert said["test"]["predicate"]["promotion"]["forced"] is False
