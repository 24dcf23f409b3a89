"""The image server's services: made once per app by `create_app`, kept on the app here and
nowhere else, and reached by routes through one dependency (`deps.ServicesDep`)."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from sqlalchemy.engine import Engine
from temporalio.client import Client

from clients.temporal import connect
from core.config import ServerSettings, Settings
from server_api.badges import BadgeCache
from server_api.csrf import FormTokens
from server_api.deltas import DeltaMaker
from server_api.edge import EdgeFiles
from server_api.feeds import FeedCache
from server_api.metrics import ServerMetrics
from server_api.provenance import ProvenanceKey
from server_api.sjson import StreamSigner
from server_api.static import StaticTrees
from server_api.store import FileStore
from server_api.workers_seen import WorkerWatch

if TYPE_CHECKING:
    from server_api.dispatch import Dispatcher  # it starts workflows through TemporalLink


class TemporalLink:
    """Temporal as POST /api/v1/pipelines reaches it, and the UI links pages show: the client
    connects on first use and is kept; while Temporal is down each use tries again and
    raises `TemporalUnavailable`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Client | None = None

    async def client(self) -> Client:
        if self._client is None:
            self._client = await connect(self.settings)
        return self._client

    def ui_link(self, workflow_id: str) -> str:
        return self.settings.workflow_ui_link(workflow_id)


@dataclass(frozen=True)
class Services:
    settings: ServerSettings
    engine: Engine
    store: FileStore
    metrics: ServerMetrics
    feeds: FeedCache
    streams: StreamSigner  # signs the feeds (.sjson)
    static: StaticTrees
    edge: EdgeFiles
    deltas: DeltaMaker
    temporal: TemporalLink
    forms: FormTokens
    badges: BadgeCache
    workers: WorkerWatch
    dispatcher: "Dispatcher"
    provenance: ProvenanceKey


def attach(app: FastAPI, services: Services) -> None:
    app.state.services = services


def services_of(app: FastAPI) -> Services:
    services = app.state.services
    assert isinstance(services, Services), "create_app attaches the services"
    return services


async def get_services(request: Request) -> Services:
    """The dependency (`deps.ServicesDep`): async, as it does no I/O."""
    return services_of(request.app)
