"""Build activity (arch worker): build one arch of an image, upload its files.

Runs on the arch's task queue because the files are made on, and for, that host.
"""

import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.builders.base import BuildJob, Built, HostDirs, Progress
from activities.builders.errors import BuildError
from activities.builders.inputs import ReleaseCache, arch_inputs
from activities.builders.registry import BUILDERS, tool_version
from activities.errors import image_server_errors
from activities.heartbeat import heartbeating
from activities.slots import WorkerSlots
from clients.catalog import CatalogClient
from core.catalog import ArchFiles, BuildRecord, BuiltFile
from core.config import Settings
from core.inputs import ArchInputs
from core.pipeline import BuildInput


class BuildActivities:
    def __init__(self, catalog: CatalogClient, settings: Settings, slots: WorkerSlots) -> None:
        self.catalog = catalog
        self.slots = slots
        self.dirs = HostDirs(
            debs=settings.deb_dir or settings.state_dir / "debs",
            cache=settings.state_dir / "cache",
        )
        self.build_dir = settings.build_dir or settings.state_dir / "builds"
        # The host's other workers share its downloads through a file in `cache`.
        self.releases = ReleaseCache(settings.inputs_ttl_s)

    @activity.defn
    def resolve_inputs(self, inp: BuildInput) -> ArchInputs:
        """What the arch's build would install: on the arch's host, which has its .debs."""
        with heartbeating(), build_errors():
            return arch_inputs(inp.spec, inp.arch, self.dirs, self.releases)

    @activity.defn
    def build_image(self, inp: BuildInput) -> ArchFiles:
        with heartbeating() as progress, self.slots.held("build", progress):
            return self._build_and_upload(inp, progress)

    def _build_and_upload(self, inp: BuildInput, progress: Progress) -> ArchFiles:
        out_dir = self.build_dir / inp.spec.name.replace(":", "_") / inp.serial / inp.arch
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        job = BuildJob(inp.spec, inp.arch, inp.serial, out_dir, progress)
        started = datetime.now(UTC)
        with build_errors():
            built: Built = BUILDERS[inp.spec.builder](job, self.dirs)
        record = BuildRecord(
            host=socket.gethostname(),
            tool_version=tool_version(inp.spec.builder),
            started_at=started,
            finished_at=datetime.now(UTC),
        )
        try:
            with image_server_errors():
                for file, path in built:
                    sent = self.catalog.upload(path, file, progress=_upload_beat(file))
                    progress(f"{file.name}: {'uploaded' if sent else 'already on the server'}")
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        return ArchFiles(arch=inp.arch, files=[file for file, _ in built], built=record)


@contextmanager
def build_errors() -> Iterator[None]:
    """A builder's one-line BuildError as a Temporal failure, retried only if it may pass."""
    try:
        yield
    except BuildError as exc:
        raise ApplicationError(
            str(exc), type="BuildError", non_retryable=not exc.retryable
        ) from None


def _upload_beat(file: BuiltFile) -> Callable[[int], None]:
    return lambda sent: activity.heartbeat(f"uploading {file.name}: {sent}/{file.size} bytes")
