"""Build activity (arch worker): build one arch of an image, upload its files.

Runs on the arch's task queue because the files are made on, and for, that host.
"""

import shutil
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.build.busybox import build_busybox
from activities.build.debootstrap import build_debootstrap
from activities.build.distrobuilder import build_distrobuilder
from activities.build.errors import BuildError
from activities.build.image_files import Progress
from activities.catalog import rejected
from activities.heartbeat import heartbeating
from core.catalog_client import CatalogClient, CatalogRejected
from core.config import Settings
from core.models import ArchFiles, BuiltFile
from core.pipeline import BuildInput


class BuildActivities:
    def __init__(self, catalog: CatalogClient, settings: Settings) -> None:
        self.catalog = catalog
        self.deb_dir = settings.deb_dir or settings.state_dir / "debs"
        self.build_dir = settings.build_dir or settings.state_dir / "builds"
        self.cache_dir = settings.state_dir / "cache"

    def _build(
        self, inp: BuildInput, out_dir: Path, progress: Progress
    ) -> list[tuple[BuiltFile, Path]]:
        image, arch, serial = inp.image, inp.arch, inp.serial
        match image.builder:
            case "busybox":
                return build_busybox(image, arch, serial, self.deb_dir, out_dir, progress)
            case "debootstrap":
                return build_debootstrap(image, arch, serial, self.cache_dir, out_dir, progress)
            case "distrobuilder":
                return build_distrobuilder(image, arch, serial, out_dir, progress)

    @activity.defn
    def build_image(self, inp: BuildInput) -> ArchFiles:
        with heartbeating() as progress:
            return self._build_and_upload(inp, progress)

    def _build_and_upload(self, inp: BuildInput, progress: Progress) -> ArchFiles:
        out_dir = self.build_dir / inp.image.name.replace(":", "_") / inp.serial / inp.arch
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        try:
            built = self._build(inp, out_dir, progress)
        except BuildError as exc:
            raise ApplicationError(
                str(exc), type="BuildError", non_retryable=not exc.retryable
            ) from None
        try:
            for file, path in built:
                sent = self.catalog.upload(
                    path,
                    file,
                    progress=lambda n, name=file.name, size=file.size: activity.heartbeat(
                        f"uploading {name}: {n}/{size} bytes"
                    ),
                )
                progress(f"{file.name}: {'uploaded' if sent else 'already on the server'}")
        except CatalogRejected as exc:
            raise rejected(exc) from None
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        return ArchFiles(arch=inp.arch, files=[file for file, _ in built])
