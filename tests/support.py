"""What only the tests need besides fixtures: a Postgres database (skipped without root),
the history check of a healthy pipeline, a raw HTTP request, the wheel built and installed,
a page's form token.
The real parts tests and benchmarks share (servers, `publish`, `until`, processes) are in
`harness/`."""

import asyncio
import os
import re
import shutil
import ssl
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowHandle

from core.config import REPO_DIR, ServerSettings
from harness.servers import RunningServer
from harness.temporal import failed_attempts
from harness.waiting import until

# Labels of this run's LXD instances: concurrent runs on one LXD must not judge each other's.
SCOPE = f"tests@{uuid.uuid4().hex[:8]}"


@contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """A fresh database `name` on the host's Postgres (installed and started as root): its
    URL; stops a cluster it started. Without root (the fast tier) the test is skipped; as
    root (deploy/test, CI) a Postgres that cannot be had fails it, never skips silently."""
    if os.geteuid() != 0:
        pytest.skip("Postgres tests need root to install and start postgresql")
    script = REPO_DIR / "deploy" / "postgres-for-tests"
    try:
        out = subprocess.run(
            [script, name], capture_output=True, text=True, timeout=600, check=True
        ).stdout.splitlines()
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"no Postgres server here: {exc.stderr.strip()}")
    try:
        yield out[0]
    finally:
        if len(out) > 1:
            _, version, cluster = out[1].split()
            subprocess.run(["pg_ctlcluster", version, cluster, "stop"], check=False, timeout=60)


def borrow_debootstrap_cache(state_dir: Path) -> None:
    """The packages `deploy/run-local` (or an earlier build) left in .state/cache, hard-linked
    into the test workers' own cache (state_dir's): only the indexes are fetched again, and
    nothing the tests download is written into the shared one."""
    shared = REPO_DIR / ".state" / "cache" / "debootstrap"
    if shared.is_dir():
        ours = state_dir / "cache" / "debootstrap"
        shutil.copytree(shared, ours, copy_function=_link_new, dirs_exist_ok=True)


def _link_new(source: str, dest: str) -> None:
    """A hard link, unless an earlier borrow (or a build) already put the file there."""
    if not os.path.exists(dest):
        os.link(source, dest)


async def assert_no_failed_attempts(handle: WorkflowHandle) -> None:
    """A healthy pipeline passes on first attempts: a Temporal retry must never be what made
    it pass."""
    bad = await failed_attempts(handle)
    assert not bad, f"{handle.id} had failed activity attempts: " + "; ".join(bad)


class RawRequest:
    """One HTTP/1.1 request on a TLS connection of its own, its body sent as the test says
    (in pieces, stalled, never finished): httpx sends a whole body before it reads."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings

    async def open(self, method: str, target: str, headers: dict[str, str]) -> None:
        s = self.settings
        ca = ssl.create_default_context(cafile=s.cert_path)
        self.reader, self.writer = await asyncio.open_connection(s.host, s.port, ssl=ca)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {s.host}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def status(self, timeout_s: float = 20) -> int:
        """The answer's status code (waiting at most `timeout_s`); closes the connection."""
        try:
            line = await asyncio.wait_for(self.reader.readline(), timeout_s)
        finally:
            self.writer.close()
        return int(line.split()[1])


# What a copy of the checkout leaves out: a build must not see (or write) caches, venvs, state.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".state", ".hypothesis", ".*_cache", "__pycache__", "build", "*.egg-info"
)


def _run(argv: list[Any], timeout: float) -> None:
    """Without PYTHONPATH: the checkout's icefloe.egg-info on it makes pip take the wheel for
    installed already and leave it out of the new venv."""
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=outside_env()
    )
    assert done.returncode == 0, f"{argv[:3]} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"


def build_wheel(dest: Path) -> Path:
    """The wheel pyproject.toml describes, built from a copy of the checkout (building in place
    would leave build/ behind)."""
    src = dest / "src"
    shutil.copytree(REPO_DIR, src, ignore=_NOT_SOURCE)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dest, src], 600)
    return next(dest.glob("icefloe-*.whl"))


@dataclass
class Installed:
    """The wheel installed where deploy/install-host puts it under `root`: opt/icefloe/venv."""

    wheel: Path
    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "opt" / "icefloe" / "venv" / "bin"

    def run(self, program: str, *args: str, **env: str) -> subprocess.CompletedProcess:
        """A program of the venv, run outside the checkout without this process's settings."""
        return subprocess.run(
            [str(self.bin / program), *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
            env=outside_env(**env),
        )


def install_wheel(wheel: Path, venv: Path) -> Path:
    """A fresh venv with the wheel and its dependencies at requirements.lock's pins (constraints:
    the dev tools stay out); returns its bin directory."""
    _run([sys.executable, "-m", "venv", venv], 300)
    _run([venv / "bin" / "pip", "install", "-q", "-c", REPO_DIR / "requirements.lock", wheel], 1800)
    return venv / "bin"


def outside_env(**extra: str) -> dict[str, str]:
    """This environment minus whatever points into the checkout or sets ICEFLOE_*, plus extra."""
    dropped = ("PYTHONPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("ICEFLOE_")}
    return env | {"ICEFLOE_LOG_LEVEL": "WARNING"} | extra


def run_icefloe(
    *args: str, env: Mapping[str, str], timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """`icefloe ARGS` as a user runs it: a process of its own in the checkout, with `env`."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        cwd=REPO_DIR,
        timeout=timeout_s,
        env=dict(env),
    )


def icefloe_token(state_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """`icefloe token ...` against the server state in `state_dir`, as an operator runs it."""
    env = os.environ | {"ICEFLOE_STATE_DIR": str(state_dir), "ICEFLOE_LOG_LEVEL": "ERROR"}
    return run_icefloe("token", *args, env=env)


def rotate_keys(server: RunningServer) -> str:
    """`icefloe keys rotate` on the server's host (its state dir and catalog); what it said."""
    settings = server.server_settings
    env = {"ICEFLOE_STATE_DIR": str(settings.state_dir)}
    if settings.database_url:
        env["ICEFLOE_SERVER_DATABASE_URL"] = settings.database_url
    done = run_icefloe("keys", "rotate", env=os.environ | env)
    assert done.returncode == 0, done.stderr
    return done.stdout


FORM_TOKEN = re.compile(r'name="form_token" value="([0-9a-f]{64})"')


def form_token(page: str) -> str:
    """The token a catalog page's forms carry for the browser that fetched it (server_api.csrf)."""
    found = FORM_TOKEN.search(page)
    assert found, "the page has no form token"
    return found[1]


def sign_in(browser: httpx.Client, secret: str, next_path: str = "/") -> httpx.Response:
    """The sign-in form filled in and sent, as a browser does: the form first, then the post."""
    shown = form_token(browser.get("/login").text)
    return browser.post("/login", data={"token": secret, "next": next_path, "form_token": shown})


async def nothing_left(leftovers: Callable[[], list[str]], what: str) -> None:
    """Until `leftovers` (test instances, cached images) finds none: an arch worker deletes
    them just after its test activity returns (activities/lxd_test/cleanup.py), so the
    pipeline's result may come first. A ceiling for a loaded machine, not a measure."""
    await until(lambda: asyncio.to_thread(lambda: not leftovers()), f"no {what} left", 60, 0.1)


def icefloe_cli(server: RunningServer, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The CLI as a user runs it, pointed at the server, with only the tokens given."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("ICEFLOE_") or k == "ICEFLOE_HOME"
    }
    return run_icefloe(
        *args,
        env=base
        | {
            "ICEFLOE_SERVER_URL": server.url,
            "ICEFLOE_SERVER_CA": str(server.server_settings.cert_path),
            "ICEFLOE_STATE_DIR": str(server.server_settings.state_dir / "cli"),
            "ICEFLOE_LOG_LEVEL": "ERROR",
            "COLUMNS": "160",
        }
        | env,
    )
