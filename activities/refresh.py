"""Refresh activities (control worker): read the catalogue from ICEFLOE_IMAGES_DIR, ask
Temporal which images already have a pipeline running, keep the refresh schedules in step."""

from pathlib import Path

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client

from activities.heartbeat import beating
from clients.schedules import sync_refresh_schedules
from clients.temporal import running_pipelines
from core.catalogue import Catalogue, load_catalogue


class CatalogueNow(BaseModel):
    """The catalogue as its files say now, and how many pipelines to run at once here."""

    catalogue: Catalogue
    max_parallel: int


class RefreshActivities:
    def __init__(self, client: Client, images_dir: Path, max_parallel: int) -> None:
        self.client = client
        self.images_dir = images_dir
        self.max_parallel = max_parallel

    @activity.defn
    @beating
    def load_catalogue(self) -> CatalogueNow:
        """Read anew at every refresh: an added, changed or removed file counts at once."""
        return CatalogueNow(
            catalogue=load_catalogue(self.images_dir), max_parallel=self.max_parallel
        )

    @activity.defn
    async def running_pipelines(self, images: list[str]) -> dict[str, str]:
        return await running_pipelines(self.client, images)

    @activity.defn
    async def sync_schedules(self, rules: list[str]) -> dict[str, str]:
        """A definition with a new rule gets its schedule with no other step."""
        return await sync_refresh_schedules(self.client, rules)
