"""Build activity (arch worker): build one arch of an image, upload its files.

Runs on the arch's task queue because the files are made on, and for, that host.
"""

import shutil

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.build.busybox import build_busybox
from activities.build.errors import BuildError
from activities.catalog import rejected
from core.catalog_client import CatalogClient, CatalogRejected
from core.config import Settings
from core.models import ArchFiles
from core.pipeline import BuildInput


def _progress(message: str) -> None:
    activity.heartbeat(message)
    activity.logger.info(message)


class BuildActivities:
    def __init__(self, catalog: CatalogClient, settings: Settings) -> None:
        self.catalog = catalog
        self.deb_dir = settings.deb_dir or settings.state_dir / "debs"
        self.build_dir = settings.build_dir or settings.state_dir / "builds"

    @activity.defn
    def build_image(self, inp: BuildInput) -> ArchFiles:
        out_dir = self.build_dir / inp.image.name.replace(":", "_") / inp.serial / inp.arch
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        try:
            built = build_busybox(
                inp.image, inp.arch, inp.serial, self.deb_dir, out_dir, progress=_progress
            )
        except BuildError as exc:
            raise ApplicationError(str(exc), type="BuildError", non_retryable=True) from None
        try:
            for file, path in built:
                sent = self.catalog.upload(
                    path,
                    file,
                    progress=lambda n, name=file.name, size=file.size: activity.heartbeat(
                        f"uploading {name}: {n}/{size} bytes"
                    ),
                )
                _progress(f"{file.name}: {'uploaded' if sent else 'already on the server'}")
        except CatalogRejected as exc:
            raise rejected(exc) from None
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        return ArchFiles(arch=inp.arch, files=[file for file, _ in built])
