"""The wheel alone runs Icefloe: built from pyproject.toml and installed with its pinned
dependencies into a venv outside the checkout, it finds its image definitions, migrations and
state through settings, never through paths inside the repository."""

import sqlite3
import ssl
import subprocess
import tomllib
import zipfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from core.config import REPO_DIR, ServerSettings
from harness.processes import alive, free_port, stop
from harness.servers import answers
from harness.waiting import wait_until
from tests.support import Installed, outside_env

# In the import contracts but not in the wheel: what only tests and benchmarks run.
NOT_SHIPPED = {"harness", "bench", "tests"}

pytestmark = pytest.mark.slow


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_every_module_and_data_file_ships(installed_wheel: Installed) -> None:
    """pyproject.toml lists its packages: one left out would be missing only from the wheel."""
    roots = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["tool"]["importlinter"][
        "root_packages"
    ]
    roots = [r for r in roots if r not in NOT_SHIPPED]
    expected = {
        str(p.relative_to(REPO_DIR))
        for root in roots
        for p in (REPO_DIR / root).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    expected |= {f"core/definitions/{p.name}" for p in (REPO_DIR / "images").glob("*.yaml")}
    expected |= {"server_api/alembic.ini", "server_api/alembic/script.py.mako"}
    expected |= {"deploy/nginx/icefloe.conf.template", "deploy/nginx/icefloe.js"}
    expected |= {
        str(p.relative_to(REPO_DIR))
        for pattern in ("templates/*.html", "templates/*.svg", "assets/*.css")
        for p in (REPO_DIR / "server_api").glob(pattern)
    }
    shipped = {
        name
        for name in zipfile.ZipFile(installed_wheel.wheel).namelist()
        if not name.split("/")[0].endswith(".dist-info")
    }
    assert shipped == expected


def test_help_and_defaults_outside_a_checkout(installed_wheel: Installed) -> None:
    assert not installed_wheel.root.is_relative_to(REPO_DIR)
    assert installed_wheel.run("icefloe", "--help").stdout.count("worker") >= 1
    show = "from core.config import Settings as S; s = S(); print(s.state_dir, s.images_dir)"
    state, images = installed_wheel.run("python", "-c", show).stdout.split()
    assert state == "/var/lib/icefloe"
    assert Path(images).is_relative_to(installed_wheel.bin.parent)
    assert Path(images, "busybox.yaml").exists()
    state, _ = installed_wheel.run("python", "-c", show, ICEFLOE_STATE_DIR="/srv/x").stdout.split()
    assert state == "/srv/x"


def test_trigger_names_a_shipped_definition(installed_wheel: Installed) -> None:
    """`--image` defaults to the shipped busybox: it loads, and the next step (Temporal) is
    what fails here; an unknown name lists the ones there are."""
    line = one_line_error(
        installed_wheel.run("icefloe", "trigger", ICEFLOE_TEMPORAL_ADDRESS="127.0.0.1:1")
    )
    assert "Temporal is not reachable at 127.0.0.1:1" in line
    line = one_line_error(installed_wheel.run("icefloe", "trigger", "--image", "nosuch"))
    assert "no image definition 'nosuch'" in line and "busybox, debian-bookworm" in line


def test_unknown_arch_refused_in_one_line(installed_wheel: Installed) -> None:
    line = one_line_error(installed_wheel.run("icefloe", "worker", "arch", "sparc"))
    assert "unknown arch 'sparc'" in line


@pytest.fixture
def server(
    installed_wheel: Installed, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    port = free_port()
    env = outside_env(ICEFLOE_STATE_DIR=str(tmp_path), ICEFLOE_SERVER_PORT=str(port))
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [installed_wheel.bin / "icefloe", "server"],
        cwd=installed_wheel.root,
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        yield proc, f"https://127.0.0.1:{port}", tmp_path
    finally:
        stop(proc)
        log.close()


def test_server_runs_from_the_wheel_with_state_from_settings(
    server: tuple[subprocess.Popen, str, Path],
) -> None:
    proc, url, state = server
    settings = ServerSettings(state_dir=state, port=int(url.rpartition(":")[2]))

    def up() -> bool:
        alive(proc, state / "server.log")
        return answers(settings)

    wait_until(up, "the wheel's server answering", 60, 0.2)
    verify = ssl.create_default_context(cafile=settings.cert_path)
    # Migrated to head with the Alembic files the wheel ships.
    with closing(sqlite3.connect(state / "catalog.db")) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()
    # The catalog pages render from the templates and stylesheet the wheel ships.
    page = httpx.get(f"{url}/", verify=verify, timeout=10)
    assert page.status_code == 200 and "<h1>Images</h1>" in page.text
    assert httpx.get(f"{url}/assets/catalog.css", verify=verify, timeout=10).status_code == 200
    badge = httpx.get(f"{url}/badges/no:such:image.svg", verify=verify, timeout=10)
    assert badge.status_code == 404 and "no such image" in badge.text
