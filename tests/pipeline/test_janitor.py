"""The arch worker's janitor between its start-up sweeps: each periodic pass asks Temporal
which workflows run, deletes the labelled instances of workflows that do not, and keeps
those of workflows that do. Real LXD instances, a real worker, the dev server."""

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from pylxd.exceptions import NotFound
from temporalio.client import Client

from activities.lxd_test.instances import LABEL, remove
from clients.catalog import CatalogClient
from clients.lxd import connect_lxd
from core.config import Settings
from harness.remote import namespace
from harness.waiting import until
from workers.arch import arch_worker, temporal_scope

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]


class Instances:
    """Labelled instances in the project the workers test in (empty: they never start)."""

    def __init__(self, settings: Settings) -> None:
        self.lxd = connect_lxd(settings)
        self.made: list[str] = []

    def labelled(self, workflow: str, scope: str) -> str:
        """An instance labelled as a test instance of `workflow` on the Temporal `scope`."""
        name = f"janitor-{uuid.uuid4().hex[:10]}"
        config = {f"{LABEL}workflow": workflow, f"{LABEL}temporal": scope}
        self.lxd.instances.create(
            {"name": name, "source": {"type": "none"}, "config": config}, wait=True
        )
        self.made.append(name)
        return name

    def exists(self, name: str) -> bool:
        try:
            self.lxd.instances.get(name)
        except NotFound:
            return False
        return True


@pytest.fixture
def instances(settings: Settings) -> Iterator[Instances]:
    made = Instances(settings)
    yield made
    for name in made.made:
        remove(made.lxd, name)


async def test_each_periodic_pass_asks_temporal_what_runs(
    temporal: Client,
    catalog: CatalogClient,
    settings: Settings,
    instances: Instances,
) -> None:
    client = await namespace(temporal, f"icefloe-janitor-{uuid.uuid4().hex[:8]}")
    scope = temporal_scope(client)
    every_fifth_of_a_second = settings.model_copy(update={"janitor_every_s": 0.2})
    # A workflow that runs (no worker polls its queue) and one that never ran.
    live = await client.start_workflow(
        "Placeholder", id=f"live-{uuid.uuid4()}", task_queue="icefloe-nobody"
    )
    with ThreadPoolExecutor(max_workers=4) as executor:
        worker = arch_worker(
            client,
            "x86_64",
            catalog,
            lambda: connect_lxd(settings),
            every_fifth_of_a_second,
            executor,
        )
        async with worker:  # its start-up sweep is over: what follows is periodic
            kept = instances.labelled(live.id, scope)
            orphan = instances.labelled(f"gone-{uuid.uuid4()}", scope)
            # Another Temporal's instance, whose workflow this one does not know: not ours.
            foreign = instances.labelled("elsewhere", "default@127.0.0.1:1")
            await until(lambda: not instances.exists(orphan), "a pass deletes the orphan")
            # That pass listed the older `kept` too, and asked Temporal about it.
            assert instances.exists(kept) and instances.exists(foreign)

            await live.terminate("its pipeline ended")
            await until(lambda: not instances.exists(kept), "a later pass sees the workflow ended")
            assert instances.exists(foreign)
