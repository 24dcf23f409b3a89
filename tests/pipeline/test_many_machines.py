"""The many-machine recipe, played on this host as a deploy runs it: a fresh Temporal server
(no search attributes) behind a TLS proxy that wants client certificates, the image server on
Postgres, `icefloe setup-temporal`, a control worker and two arch workers (x86_64 driving LXD
over HTTPS, i686 on the unix socket), each its own `icefloe` process of the wheel installed in
a venv outside the checkout, with its own state directory and only its settings in the
environment; then `icefloe trigger --wait`."""

import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from core.config import REPO_DIR
from deploy.stack import temporal_binary
from harness.processes import LOOPBACK, alive, free_port, stop, wait_for_port
from harness.remote import TestCA, lxd_over_https, tls_proxy
from harness.servers import DEBS
from harness.waiting import wait_until
from tests.support import build_wheel, install_wheel, outside_env, postgres_database

pytestmark = [pytest.mark.lxd, pytest.mark.temporal, pytest.mark.postgres]


@pytest.fixture(scope="module")
def wheel_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Icefloe as a user installs it: the wheel in a venv of its own (its bin directory)."""
    root = tmp_path_factory.mktemp("wheel")
    assert not root.is_relative_to(REPO_DIR)
    return install_wheel(build_wheel(root / "dist"), root / "venv")


class Recipe:
    """Starts `icefloe` processes of the installed wheel outside the checkout, each with a log of
    its own, and stops them all by PID."""

    def __init__(self, bin_dir: Path, work: Path, stack: ExitStack) -> None:
        self.bin_dir = bin_dir
        self.work = work
        self.stack = stack
        self.logs: list[Path] = []

    def argv(self, *args: str) -> list[str]:
        return [str(self.bin_dir / "icefloe"), *args]

    def env(self, settings: dict[str, str]) -> dict[str, str]:
        """This machine's settings only: nothing of the test's own ICEFLOE_* or checkout."""
        return outside_env(ICEFLOE_LOG_LEVEL="INFO", **settings)

    def run(
        self, settings: dict[str, str], *args: str, timeout_s: float = 120
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(*args),
            cwd=self.work,
            env=self.env(settings),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def ok(self, settings: dict[str, str], *args: str) -> str:
        done = self.run(settings, *args)
        assert done.returncode == 0, f"icefloe {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def start(self, name: str, argv: list[str], settings: dict[str, str]) -> subprocess.Popen:
        log = self.work / f"{name}.log"
        self.logs.append(log)
        with log.open("w") as out:
            proc = subprocess.Popen(
                argv, cwd=self.work, env=self.env(settings), stdout=out, stderr=subprocess.STDOUT
            )
        self.stack.callback(stop, proc)
        return proc

    def worker(self, name: str, settings: dict[str, str], *args: str) -> None:
        """`icefloe worker ...`, once it polls its task queue."""
        proc = self.start(name, self.argv("worker", *args), settings)
        log = self.logs[-1]

        def polling() -> bool:
            alive(proc, log)
            return "worker polling" in log.read_text()

        wait_until(polling, f"{name} polling: {log}", 60, 0.2)

    def tails(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in self.logs)


@contextmanager
def fresh_temporal(recipe: Recipe) -> Iterator[str]:
    """`temporal server start-dev` as a new cluster starts: no search attribute registered."""
    port = free_port()
    proc = recipe.start(
        "temporal",
        [
            *(temporal_binary(), "server", "start-dev", "--headless", "--ip", LOOPBACK),
            *("--port", str(port), "--http-port", str(free_port())),
            *("--metrics-port", str(free_port()), "--log-level", "error"),
        ],
        {},
    )
    wait_for_port(port, proc, recipe.logs[-1])
    yield f"{LOOPBACK}:{port}"


def test_the_many_machine_recipe_takes_the_sample_image_to_active(
    wheel_bin: Path, tmp_path: Path
) -> None:
    ca = TestCA(tmp_path / "pki")
    with ExitStack() as stack:
        recipe = Recipe(wheel_bin, tmp_path, stack)
        database = stack.enter_context(postgres_database("icefloe_many_machines"))
        temporal = stack.enter_context(fresh_temporal(recipe))
        proxy = stack.enter_context(tls_proxy(temporal, ca, tmp_path / "nginx"))
        lxd = stack.enter_context(lxd_over_https(tmp_path / "lxd"))

        # The image server host: its catalog on Postgres, its own certificate.
        server_dir = tmp_path / "server"
        port = free_port()
        server = {
            "ICEFLOE_STATE_DIR": str(server_dir),
            "ICEFLOE_SERVER_DATABASE_URL": database,
            "ICEFLOE_SERVER_PORT": str(port),
        }
        proc = recipe.start("server", recipe.argv("server"), server)
        wait_for_port(port, proc, recipe.logs[-1])
        token = recipe.ok(server, "token", "create", "--name", "workers").strip()

        def machine(name: str, **extra: str) -> dict[str, str]:
            client = ca.issue(name, server=False)
            return {
                "ICEFLOE_STATE_DIR": str(tmp_path / name),
                "ICEFLOE_TEMPORAL_ADDRESS": proxy,
                "ICEFLOE_TEMPORAL_TLS_CA": str(ca.cert),
                "ICEFLOE_TEMPORAL_TLS_CERT": str(client.cert),
                "ICEFLOE_TEMPORAL_TLS_KEY": str(client.key),
                "ICEFLOE_SERVER_URL": f"https://{LOOPBACK}:{port}",
                "ICEFLOE_SERVER_CA": str(server_dir / "tls" / "server.crt"),
                "ICEFLOE_PUBLISHER_TOKEN": token,
                "ICEFLOE_GRACEFUL_SHUTDOWN_S": "30",
                **extra,
            }

        setup = recipe.ok(machine("operator"), "setup-temporal")
        assert "search attributes: added" in setup, setup

        recipe.worker("control", machine("control"), "control")
        arch = {"ICEFLOE_DEB_DIR": str(DEBS)}
        recipe.worker("x86_64", machine("x86_64", **arch, **lxd.env()), "arch", "x86_64")
        recipe.worker("i686", machine("i686", **arch), "arch", "i686")

        trigger = recipe.run(machine("ci"), "trigger", "--wait", timeout_s=300)
        tails = recipe.tails()

    out = trigger.stdout + trigger.stderr
    assert trigger.returncode == 0, f"{out}\n{tails}"
    assert ": active (" in out.strip().splitlines()[-1], out
    assert "x86_64 on " in out and "i686 on " in out, out
