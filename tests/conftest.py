"""Shared real parts for the tests: a Temporal dev server, the image server over HTTPS on
loopback, and workers for every arch the local LXD runs. Nothing here is a stand-in.

Every test module or test declares, with `pytestmark` or a decorator, one marker (registered in
pyproject.toml) for each thing it needs beyond what pip installs; a bare `pytest` runs the tests
that carry none (the fast tier), and a test that uses a fixture of `NEEDS` without its markers
fails the collection."""

from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from clients.catalog import CatalogClient
from clients.lxd import connect_lxd, host_arches
from core.arch import KNOWN_ARCHES
from core.config import Settings
from harness.lxd import Lxc
from harness.servers import RunningServer
from harness.temporal import start_dev_server
from tests.support import Installed, build_wheel, install_wheel
from workers.arch import arch_worker
from workers.control import control_worker


@pytest.fixture(scope="session")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Channels serve only the files they list and gc takes files at once: tests see
    each change right away (tests/server/test_races.py covers the one-hour default)."""
    with RunningServer(tmp_path_factory.mktemp("server"), channel_file_grace_s=0) as server:
        yield server


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel built and installed once a session (the install takes a minute or more)."""
    tmp = tmp_path_factory.mktemp("wheel")
    installed = Installed(build_wheel(tmp / "dist"), tmp / "root")
    install_wheel(installed.wheel, installed.bin.parent)
    return installed


@pytest.fixture(scope="session")
def settings(image_server: RunningServer) -> Settings:
    return image_server.client_settings()


@pytest.fixture(scope="session")
def catalog(settings: Settings) -> Iterator[CatalogClient]:
    client = CatalogClient(settings)
    yield client
    client.close()


@pytest.fixture
def lxc(tmp_path: Path) -> Iterator[Lxc]:
    """The `lxc` client with a config of its own; the images the test put in `lxc.took` go."""
    cli = Lxc(tmp_path / "lxc-conf")
    try:
        yield cli
    finally:
        for fingerprint in cli.took:
            cli.quietly("image", "delete", fingerprint)


@pytest.fixture(scope="session")
def local_arches(settings: Settings) -> list[str]:
    """Arches the local LXD runs; the tests need two (x86_64 and i686 on these machines)."""
    return [a for a in host_arches(connect_lxd(settings)) if a in KNOWN_ARCHES]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal() -> AsyncIterator[Client]:
    async with await start_dev_server() as env:
        yield env.client


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def workers(
    temporal: Client, settings: Settings, catalog: CatalogClient, local_arches: list[str]
) -> AsyncIterator[list[str]]:
    """A control worker and one arch worker per local arch, all in this process."""
    with ThreadPoolExecutor(max_workers=16) as executor:
        running = [control_worker(temporal, catalog, executor)] + [
            arch_worker(temporal, arch, catalog, lambda: connect_lxd(settings), settings, executor)
            for arch in local_arches
        ]
        async with AsyncExitStack() as stack:
            for worker in running:
                await stack.enter_async_context(worker)
            yield local_arches


# Fixtures that bring up a real part, and the markers a test using one must carry.
NEEDS = {
    "temporal": {"temporal"},
    "workers": {"temporal", "lxd"},
    "local_arches": {"lxd"},
    "lxd": {"lxd"},  # tests/activities/conftest.py
    "lxc": {"lxd"},
    "incus": {"incus", "lxd"},  # tests/server/test_incus_client.py
    "fronted": {"nginx"},  # tests/server/conftest.py
    "browser": {"browser"},  # tests/web/test_catalog_browser.py
    "installed_wheel": {"slow"},  # builds the wheel and installs it with its dependencies
}


def missing_markers(fixtures: Iterable[str], markers: Iterable[str]) -> set[str]:
    """The markers a test using `fixtures` needs by NEEDS and does not carry."""
    needed = set().union(*(NEEDS.get(f, set()) for f in fixtures))
    return needed - set(markers)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: every test collected is checked
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unmarked = [
        f"{item.nodeid}: add pytest.mark.{', pytest.mark.'.join(sorted(missing))}"
        for item in items
        if (
            missing := missing_markers(
                getattr(item, "fixturenames", ()), (m.name for m in item.iter_markers())
            )
        )
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests without the markers their fixtures need:\n" + "\n".join(unmarked)
        )
