"""What the tests share besides fixtures: the image server in a thread, test images and
serials, tokens and clients, fake and built files to publish. Nothing here is a stand-in."""

import asyncio
import hashlib
import itertools
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pylxd
import pytest
import uvicorn
from sqlmodel import Session
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.lxd_test.checks import suite
from activities.lxd_test.instances import LaunchSpec, forget_image, launch_spec
from activities.lxd_test.suite import run_suite
from clients.catalog import CatalogClient, server_ca
from core import search_attributes as sa
from core.catalog import (
    ArchFiles,
    AssessmentReport,
    AssessmentState,
    BuiltFile,
    Channel,
    FileType,
    TransitionRequest,
    VersionCreate,
    VersionState,
)
from core.config import REPO_DIR, ServerSettings, Settings
from core.pipeline import CheckOutcome
from core.spec import ImageSpec, Privilege
from deploy.stack import temporal_binary
from server_api.main import create_app
from server_api.services import Services, services_of
from server_api.tls import ensure_self_signed
from server_api.tokens import create_token

DEBS = Settings().state_dir / "debs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class RunningServer:
    """The image server in a thread of this process, like `icefloe server` runs it."""

    def __init__(self, state_dir: Path, **settings: Any) -> None:
        """`settings`: ServerSettings fields other than the state dir and port; the others
        come from ICEFLOE_SERVER_* as `icefloe server` reads them."""
        server = {"port": free_port(), **settings}
        self.server_settings = Settings(state_dir=state_dir, server=server).server
        s = self.server_settings
        ensure_self_signed(s.cert_path, s.key_path, s.host)
        self.app = create_app(s)
        with Session(self.services.engine) as session:
            self.token = create_token(session, "tests", "publisher")
        self.url = f"https://{s.host}:{s.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=s.host,
                port=s.port,
                ssl_certfile=s.cert_path,
                ssl_keyfile=s.key_path,
                log_level="warning",
                timeout_graceful_shutdown=1,  # idle keep-alive clients must not hold a stop
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def services(self) -> Services:
        return services_of(self.app)

    def __enter__(self) -> "RunningServer":
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert time.monotonic() < deadline, "image server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def restart(self) -> None:
        """Stop serving, then serve again on the same port and app: its lifespan runs anew,
        as when uvicorn stops and starts the same application."""
        self.__exit__()
        self._server = uvicorn.Server(self._server.config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.__enter__()

    def client_settings(self, **overrides: Any) -> Settings:
        fields = {
            "state_dir": self.server_settings.state_dir,
            "server": {"url": self.url, "ca": self.server_settings.cert_path},
            "publisher_token": self.token,
            "deb_dir": DEBS,
        }
        return Settings.model_validate(fields | overrides)


def fake_files(tmp: Path, arch: str = "x86_64") -> list[tuple[BuiltFile, Path]]:
    """Two small random files declared as an image's metadata and rootfs (API tests only)."""
    out = []
    for ftype, name in ((FileType.metadata, "lxd.tar.xz"), (FileType.squashfs, "rootfs.squashfs")):
        data = os.urandom(4096)
        path = tmp / f"{arch}-{name}"
        path.write_bytes(data)
        out.append(
            (
                BuiltFile(
                    ftype=ftype, name=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data)
                ),
                path,
            )
        )
    return out


def publish_fake(catalog: CatalogClient, tmp: Path, image: ImageSpec, serial: str) -> VersionCreate:
    arches = []
    for arch in image.arches:
        files = fake_files(tmp, arch)
        for file, path in files:
            catalog.upload(path, file)
        arches.append(ArchFiles(arch=arch, files=[f for f, _ in files]))
    req = VersionCreate(spec=image, serial=serial, arches=arches)
    catalog.publish(req)
    return req


def publish_built(
    catalog: CatalogClient,
    image: ImageSpec,
    serial: str,
    arch: str,
    built: list[tuple[BuiltFile, Path]],
) -> str:
    """Upload one arch's built files, publish the version, move it to testing: its fingerprint."""
    for file, path in built:
        catalog.upload(path, file)
    catalog.publish(
        VersionCreate(
            spec=image, serial=serial, arches=[ArchFiles(arch=arch, files=[f for f, _ in built])]
        )
    )
    version = catalog.transition(
        image.name, serial, TransitionRequest(to=VersionState.testing, reason="published by a test")
    )
    return version.arches[0].fingerprint


def launch_in_testing(
    catalog: CatalogClient,
    settings: Settings,
    image: ImageSpec,
    serial: str,
    fingerprint: str,
    *,
    arch: str = "x86_64",
    kind: Privilege = Privilege.unprivileged,
    workflow: str = "test-workflow",
    temporal: str = "tests",
) -> LaunchSpec:
    """How the test activity launches a version in testing: by fingerprint, from a fresh URL."""
    ca = server_ca(settings)
    assert ca is not None
    return launch_spec(
        image.name,
        serial,
        arch,
        kind,
        server_url=catalog.channel_url(Channel.testing, fresh=fingerprint[:16]),
        fingerprint=fingerprint,
        certificate=ca.read_text(),
        workflow=workflow,
        temporal=temporal,
    )


def check_in_testing(
    lxd: pylxd.Client,
    catalog: CatalogClient,
    settings: Settings,
    image: ImageSpec,
    serial: str,
    fingerprint: str,
    arch: str,
) -> list[CheckOutcome]:
    """The benches' test step for one arch, the way the test activity does it: launch the
    version in testing by fingerprint, run the image's whole suite, forget the cached image.
    The finished outcomes, every one passed (else AssertionError with the evidence)."""
    spec = launch_in_testing(
        catalog,
        settings,
        image,
        serial,
        fingerprint,
        arch=arch,
        kind=image.privileges[0],
        workflow="bench",
        temporal="bench",
    )
    seen: list[CheckOutcome] = []
    try:
        run_suite(lxd, spec, suite(image.checks), seen.append, lambda _: None)
    finally:
        forget_image(lxd, fingerprint)
    done = [o for o in seen if o.state != AssessmentState.running]
    failed = {o.check: o.evidence for o in done if o.state == AssessmentState.failed}
    assert not failed, f"checks failed: {failed}"
    return done


def busybox_spec(release: str, **fields: object) -> ImageSpec:
    """A one-arch (x86_64) busybox image for a test: fast to build and boot."""
    return ImageSpec.model_validate(
        {"os": "busybox", "release": release, "arches": ["x86_64"], **fields}
    )


async def start_dev_server() -> WorkflowEnvironment:
    """A real Temporal dev server (in memory) with the project's search attributes."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=sa.ALL,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )


async def assert_no_failed_attempts(handle: WorkflowHandle) -> None:
    """A healthy pipeline passes on first attempts: a Temporal retry must never be what made
    it pass. Retried attempts leave no event of their own in the history; the started event
    of the attempt that ended carries its number and the failure before it."""
    bad = []
    async for e in handle.fetch_history_events():
        if e.event_type in (
            EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
            EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
        ):
            bad.append(f"event {e.event_id}: {EventType.Name(e.event_type)}")
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = e.activity_task_started_event_attributes
            if started.attempt != 1:
                bad.append(
                    f"event {e.event_id}: attempt {started.attempt} after "
                    f"{started.last_failure.message!r}"
                )
    assert not bad, f"{handle.id} had failed activity attempts: " + "; ".join(bad)


_serials = (f"20261126-{n:04d}" for n in itertools.count(1))
_names = (f"img{n}" for n in itertools.count(1))


def next_serial() -> str:
    return next(_serials)


def new_image(**overrides: object) -> ImageSpec:
    """An image no other test uses, so retention and feeds of one test stay its own."""
    fields = {
        "os": next(_names),
        "release": "one",
        "arches": ["x86_64", "i686"],
        "checks": ["boots"],
    }
    return ImageSpec.model_validate(fields | overrides)


def token(server: RunningServer, scope: str, name: str = "t") -> str:
    with Session(server.services.engine) as session:
        return create_token(session, name, scope)


def client(server: RunningServer, secret: str) -> CatalogClient:
    """A CatalogClient acting with the token `secret`."""
    return CatalogClient(server.client_settings(), token=secret)


def http(server: RunningServer) -> httpx.Client:
    """A plain HTTPS client that trusts the server, as LXD or a browser would see it."""
    return httpx.Client(base_url=server.url, verify=tls(server))


def tls(server: RunningServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=server.server_settings.cert_path)


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


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    """Wait for `condition` (polled every 50 ms); fail saying `what` did not happen. The
    timeout is a ceiling for a loaded CI machine, never a measure."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not after {timeout_s:g} s: {what}"
        await asyncio.sleep(0.05)


def pass_all(catalog: CatalogClient, image: ImageSpec, serial: str) -> None:
    """Record a pass for every check the server still needs."""
    for arch, checks in catalog.missing_checks(image.name, serial).items():
        for check in checks:
            report = AssessmentReport(arch=arch, check=check, host="h", state="passed")
            catalog.record(image.name, serial, report)


def move(catalog: CatalogClient, image: ImageSpec, serial: str, *states: str) -> None:
    for to in states:
        catalog.transition(image.name, serial, TransitionRequest(to=to, reason="test"))


# What a copy of the checkout leaves out: a build must not see (or write) caches, venvs, state.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".state", ".hypothesis", ".*_cache", "__pycache__", "build", "*.egg-info"
)


def _run(argv: list[Any], timeout: float) -> None:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)
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


def icefloe_token(state_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """`icefloe token ...` against the server state in `state_dir`, as an operator runs it."""
    env = os.environ | {"ICEFLOE_STATE_DIR": str(state_dir), "ICEFLOE_LOG_LEVEL": "ERROR"}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "token", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_DIR,
        timeout=60,
    )
