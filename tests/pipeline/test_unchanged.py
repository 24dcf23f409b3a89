"""Rebuild only what changed, on the real parts: the dev server, the image server, LXD and
Debian's busybox-static .deb. A pipeline run again with nothing changed ends `unchanged`
(nothing built, no version, the check recorded); a newer .deb, an edited definition or
`--force` rebuilds; a .deb whose bytes changed but whose package did not is refused by the
server's second guard. `icefloe trigger` runs as a user runs it. A debootstrap image whose
suite is a local Debian-format repository (harness/debian_repo.py) builds nothing while the
suite is unchanged and starts building once one of its packages is rebuilt."""

import asyncio
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from activities.builders.base import HostDirs
from activities.builders.inputs import ReleaseCache, arch_inputs
from clients.catalog import CatalogClient, CatalogRejected
from clients.lxd import connect_lxd
from core.catalog import VersionState
from core.config import REPO_DIR, Settings
from core.images import load_image
from core.inputs import VersionInputs, spec_digest
from core.pipeline import PipelineInput, PipelineResult, pipeline_workflow_id
from core.spec import ImageSpec
from harness.debian_repo import DebianRepo, repack
from harness.publish import move, next_serial, pass_all, upload
from harness.remote import namespace
from harness.servers import DEBS, RunningServer
from tests.support import assert_no_failed_attempts
from workers.arch import arch_worker
from workers.control import control_worker
from workflows.trigger import start_pipeline

pytestmark = [pytest.mark.lxd, pytest.mark.temporal, pytest.mark.debs]


@dataclass
class Stack:
    """A namespace of the test's own with a control and an x86_64 worker whose busybox
    .debs are in `debs` (the test changes them), on the session's image server."""

    client: Client
    server: RunningServer
    catalog: CatalogClient
    debs: Path
    definition: Path

    def write(self, checks: str = "[boots]") -> None:
        self.definition.write_text(
            f"os: busybox\nrelease: {self.definition.stem}\narches: [x86_64]\nchecks: {checks}\n"
        )

    @property
    def image(self) -> str:
        return load_image(self.definition).name

    async def run(self, force: bool = False) -> tuple[PipelineResult, WorkflowHandle]:
        inp = PipelineInput(spec=load_image(self.definition), serial=next_serial(), force=force)
        handle = await start_pipeline(self.client, inp)
        return await asyncio.wait_for(handle.result(), 300), handle

    def active_with_inputs(self, spec: ImageSpec, inputs: VersionInputs, tmp: Path) -> str:
        """A version of `spec` (random files) made active, as if built from `inputs`."""
        serial = next_serial()
        request = upload(self.catalog, spec, serial, tmp=tmp)
        self.catalog.publish(request.model_copy(update={"inputs": inputs}))
        move(self.catalog, spec, serial, "testing")
        pass_all(self.catalog, spec, serial)
        move(self.catalog, spec, serial, "active")
        return serial

    async def icefloe(self, *args: str) -> tuple[int, str]:
        """`icefloe trigger --wait` against this stack: exit code, stdout and stderr."""
        s = self.server.server_settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("ICEFLOE_")} | {
            "ICEFLOE_TEMPORAL_ADDRESS": self.client.service_client.config.target_host,
            "ICEFLOE_TEMPORAL_NAMESPACE": self.client.namespace,
            "ICEFLOE_SERVER_URL": self.server.url,
            "ICEFLOE_SERVER_CA": str(s.cert_path),
            "ICEFLOE_PUBLISHER_TOKEN": self.server.token,
            "ICEFLOE_STATE_DIR": str(s.state_dir),
            "ICEFLOE_LOG_LEVEL": "ERROR",
        }
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "cli.main", "trigger", "--image", str(self.definition)),
            *("--serial", next_serial(), "--wait", *args),
            cwd=REPO_DIR,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 300)
        assert proc.returncode is not None
        return proc.returncode, out.decode()


@pytest_asyncio.fixture(loop_scope="session")
async def stack(
    temporal: Client,
    image_server: RunningServer,
    catalog: CatalogClient,
    settings: Settings,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    client = await namespace(temporal, f"icefloe-unchanged-{uuid.uuid4().hex[:8]}")
    debs = tmp_path / "debs"
    debs.mkdir()
    shutil.copy(the_deb(DEBS), debs)
    # Every resolve reads the mirror afresh: a test's next pipeline is the next refresh, later on.
    own = settings.model_copy(update={"deb_dir": debs, "inputs_ttl_s": 0.0})
    definition = tmp_path / f"unch{uuid.uuid4().hex[:6]}.yaml"
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with AsyncExitStack() as workers:
            for worker in (
                control_worker(client, catalog, executor),
                arch_worker(client, "x86_64", catalog, lambda: connect_lxd(own), own, executor),
            ):
                await workers.enter_async_context(worker)
            made = Stack(client, image_server, catalog, debs, definition)
            made.write()
            yield made


def the_deb(debs: Path) -> Path:
    found = sorted(debs.glob("busybox-static_*_amd64.deb"))
    assert len(found) == 1, f"one busybox-static amd64 deb in {debs}: {found}"
    return found[0]


def replace_deb(stack: Stack, version_suffix: str) -> str:
    """The worker's .deb repacked (`dpkg-deb -R`, `-b`), its version suffixed: the version."""
    old = the_deb(stack.debs)
    version = old.name.split("_")[1].replace("%3a", ":") + version_suffix
    tmp = stack.debs.parent / "repack"
    tmp.mkdir(exist_ok=True)
    new = repack(old, tmp, version)
    old.unlink()
    shutil.move(new, stack.debs / new.name)
    return version


async def built(handle: WorkflowHandle) -> list[str]:
    """The build and publish activities the run scheduled."""
    names = []
    async for e in handle.fetch_history_events():
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = e.activity_task_scheduled_event_attributes.activity_type.name
            if name in ("build_image", "publish_version", "test_image"):
                names.append(name)
    return names


def no_version(catalog: CatalogClient, image: str, serial: str) -> bool:
    try:
        catalog.version(image, serial)
    except CatalogRejected as exc:
        return exc.status_code == 404
    return False


async def test_nothing_changed_builds_nothing_until_forced(stack: Stack) -> None:
    first, _ = await stack.run()
    assert first.state == "active", first.message
    stored = stack.catalog.version(stack.image, first.serial).inputs
    assert stored is not None and set(stored.arches["x86_64"].items) == {"deb:busybox-static"}

    again, handle = await stack.run()
    assert (again.state, again.unchanged_since, again.tests) == (None, first.serial, [])
    assert await built(handle) == [], "nothing built, published or tested"
    await assert_no_failed_attempts(handle)
    assert no_version(stack.catalog, stack.image, again.serial)
    check = stack.catalog.image_check(stack.image)
    assert check is not None
    assert (check.unchanged_since, check.workflow_id) == (first.serial, handle.id)

    code, out = await stack.icefloe()
    assert code == 0, out
    assert f": unchanged since {first.serial}: its inputs equal" in out
    assert out.rstrip().endswith("nothing built"), out

    code, out = await stack.icefloe("--force")
    assert code == 0, out
    assert ": active (every check passed" in out, out  # (the CLI may miss a short phase)
    active = stack.catalog.versions(state=VersionState.active, image=stack.image)
    assert len(active) == 2, "the forced rebuild is a version of its own"


async def test_a_newer_deb_or_an_edited_definition_rebuilds(stack: Stack) -> None:
    first, _ = await stack.run()
    assert first.state == "active", first.message

    version = replace_deb(stack, "+icefloe1")
    newer, handle = await stack.run()
    assert newer.state == "active", newer.message
    assert await built(handle) == ["build_image", "publish_version", "test_image"]
    stored = stack.catalog.version(stack.image, newer.serial).inputs
    assert stored and stored.arches["x86_64"].items["deb:busybox-static"].startswith(version)
    manifest = stack.catalog.manifest(stack.image, newer.serial).arches[0].packages
    assert [(p.name, p.version) for p in manifest or []] == [("busybox-static", version)]

    stack.write("[boots, stop]")
    edited, _ = await stack.run()
    assert edited.state == "active", edited.message
    same, _ = await stack.run()
    assert same.unchanged_since == edited.serial


async def test_the_server_refuses_a_rebuild_of_the_same_packages(stack: Stack) -> None:
    """The .deb repacked at the same version: its bytes (the inputs) differ, so it is built,
    but its manifest and definition equal the active version's: not published."""
    first, _ = await stack.run()
    assert first.state == "active", first.message
    replace_deb(stack, "")
    again, handle = await stack.run()
    assert (again.state, again.unchanged_since) == (None, first.serial), again.message
    assert "its packages and definition equal" in again.message
    assert await built(handle) == ["build_image", "publish_version"]
    assert no_version(stack.catalog, stack.image, again.serial)
    check = stack.catalog.image_check(stack.image)
    assert check is not None and check.workflow_id == handle.id
    assert pipeline_workflow_id(stack.image, again.serial) == handle.id


async def test_a_suite_unchanged_on_its_mirror_builds_nothing_until_a_package_is_rebuilt(
    stack: Stack, tmp_path: Path
) -> None:
    repo = DebianRepo(tmp_path / "mirror", "icefloe-suite", ["amd64", "i386"])
    repo.add(the_deb(stack.debs))
    repo.index()
    with repo.serve():
        spec = ImageSpec(
            os="debian",
            release=repo.suite,
            variant=stack.definition.stem,
            arches=["x86_64"],
            builder="debootstrap",
            mirror=repo.url,
            checks=["boots"],
        )
        dirs = HostDirs(debs=stack.debs, cache=tmp_path)
        built_from = arch_inputs(spec, "x86_64", dirs, ReleaseCache())
        inputs = VersionInputs(spec_digest=spec_digest(spec), arches={"x86_64": built_from})
        since = stack.active_with_inputs(spec, inputs, tmp_path / "files")
        fetched = repo.requests[f"/dists/{repo.suite}/InRelease"]

        inp = PipelineInput(spec=spec, serial=next_serial())
        handle = await start_pipeline(stack.client, inp)
        result = await asyncio.wait_for(handle.result(), 300)
        assert (result.state, result.unchanged_since) == (None, since), result.message
        assert await built(handle) == []
        assert repo.requests[f"/dists/{repo.suite}/InRelease"] == fetched + 1
        assert [p for p in repo.requests if "/pool/" in p or "Packages" in p] == []

        deb = the_deb(stack.debs)
        repo.remove(deb.name)
        repo.add(repack(deb, tmp_path, deb.name.split("_")[1].replace("%3a", ":") + "+1"))
        repo.index()
        changed = await start_pipeline(
            stack.client, inp.model_copy(update={"serial": next_serial()})
        )
        ended = asyncio.ensure_future(changed.result())
        while "build_image" not in await built(changed):
            assert not ended.done(), f"the changed suite was not built: {ended.result().message}"
            await asyncio.sleep(0.2)
        await changed.terminate("only the start of its build was wanted")
        with pytest.raises(WorkflowFailureError):
            await ended
