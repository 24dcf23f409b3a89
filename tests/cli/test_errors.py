"""Bad input to the command line gets one line saying what to do, never a traceback."""

import os
import socket
import subprocess
import sys

import pytest

from core.config import REPO_DIR


def icefloe(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_DIR,
        env=os.environ | {"ICEFLOE_LOG_LEVEL": "WARNING"} | env,
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.lxd
def test_unknown_arch_for_a_worker() -> None:
    line = one_line_error(icefloe("worker", "arch", "sparc64"))
    assert "unknown arch 'sparc64'" in line and "x86_64" in line


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"ICEFLOE_TEMPORAL_TLS_CERT": "/etc/icefloe/worker.crt"},
            "ICEFLOE_TEMPORAL_TLS_CERT and ICEFLOE_TEMPORAL_TLS_KEY go together: set both",
        ),
        (
            {"ICEFLOE_GRACEFUL_SHUTDOWN_S": "soon"},
            "ICEFLOE_GRACEFUL_SHUTDOWN_S: Input should be a valid number",
        ),
    ],
)
def test_a_bad_setting(env: dict[str, str], expected: str) -> None:
    line = one_line_error(icefloe("trigger", **env))
    assert expected in line, line


@pytest.mark.lxd
def test_arch_the_local_lxd_cannot_run() -> None:
    line = one_line_error(
        icefloe("worker", "arch", "aarch64", ICEFLOE_TEMPORAL_ADDRESS="127.0.0.1:1")
    )
    assert "runs x86_64" in line and "not aarch64" in line


@pytest.mark.lxd
def test_missing_lxd() -> None:
    line = one_line_error(icefloe("up", "--once", ICEFLOE_LXD_ENDPOINT="https://127.0.0.1:1"))
    assert "LXD is not reachable" in line and "deploy/setup-host" in line


@pytest.mark.lxd
def test_port_already_taken() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        line = one_line_error(icefloe("up", "--once", ICEFLOE_TEMPORAL_ADDRESS=f"127.0.0.1:{port}"))
    assert "is already taken" in line


def test_image_definition_with_a_bad_field(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("os: debian\nrelease: bookworm\narches: [sparc]\n")
    line = one_line_error(icefloe("trigger", "--image", str(bad)))
    assert "arches.0" in line


@pytest.mark.parametrize("arch", ["sparc", "mips"])
def test_trigger_with_unknown_arch(arch: str) -> None:
    line = one_line_error(icefloe("trigger", "--arch", arch))
    assert f"unknown arch '{arch}'" in line
