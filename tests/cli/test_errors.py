"""Bad input to the command line gets one line saying what to do, never a traceback: argparse
refuses what it can see is wrong (exit 2, the usage and one error line) before anything starts."""

import argparse
import asyncio
import os
import socket
import subprocess
import sys

import pytest
from temporalio.client import Client

from cli.main import parser
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


def usage_error(result: subprocess.CompletedProcess) -> str:
    """argparse's refusal: exit 2, the sub-command's usage, then the line saying what is wrong."""
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr and not result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("usage: icefloe"), result.stderr
    return lines[-1]


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """`icefloe ARGS` parsed in this process (the parser `main` uses, without a process start
    each): argparse must stop there, before any command runs."""
    with pytest.raises(SystemExit) as stopped:
        parser().parse_args(args)
    out, err = capsys.readouterr()
    code = stopped.value.code
    assert isinstance(code, int)
    return usage_error(subprocess.CompletedProcess(args, code, out, err))


def test_every_command_keeps_its_name_and_has_help() -> None:
    """Each module registers its own sub-commands; together they are the commands there were."""

    def commands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        return {name: sub for a in subs for name, sub in a.choices.items()}

    top = commands(parser())
    assert set(top) == {
        *("server", "export", "token", "worker", "trigger", "status", "retry", "promote"),
        *("cancel", "versions", "show", "gc", "catalogue", "hook", "refresh", "setup-temporal"),
        *("up", "revoke", "hold", "release"),
        *("known-failure", "checks", "keys", "verify", "pin"),
    }
    assert set(commands(top["keys"])) == {"rotate"}
    assert set(commands(top["known-failure"])) == {"add", "list", "remove"}
    assert set(commands(top["token"])) == {"create", "list", "revoke", "follow"}
    assert set(commands(top["worker"])) == {"control", "arch"}
    assert set(commands(top["hook"])) == {"add", "list", "remove", "deliveries"}
    for name, sub in top.items():
        assert sub.format_help().startswith(f"usage: icefloe {name}")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("token", "revoke"),
            "icefloe token revoke: error: the following arguments are required: ID",
        ),
        (
            ("token", "follow", "1"),
            "icefloe token follow: error: the following arguments are required: --channel",
        ),
        (
            ("token", "follow", "1", "--channel", "beta"),
            "argument --channel: invalid choice: 'beta'",
        ),
        (("token", "revoke", "one"), "argument ID: invalid int value: 'one'"),
        (("token",), "icefloe token: error: the following arguments are required: action"),
        (
            ("worker", "arch"),
            "icefloe worker arch: error: the following arguments are required: ARCH",
        ),
        (("worker",), "icefloe worker: error: the following arguments are required: role"),
        (
            ("revoke", "a:b:c", "20261203-1"),
            "icefloe revoke: error: the following arguments are required: --reason",
        ),
        (("revoke", "a:b:c", "soon", "--reason", "x"), "argument serial: serial must start"),
        (("hold", "a:b:c"), "icefloe hold: error: the following arguments are required: --reason"),
        (("release",), "icefloe release: error: the following arguments are required: image"),
        (("verify",), "icefloe verify: error: the following arguments are required: image"),
    ],
)
def test_what_a_sub_command_needs_is_refused_by_argparse(
    args: tuple[str, ...], expected: str, capsys
) -> None:
    """These were checks by hand inside `icefloe token` ("needs an id", "needs --channel")."""
    line = refused(capsys, *args)
    assert expected in line, line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("trigger", "--serial", "bad serial!"),
            "argument --serial: serial must start with YYYYMMDD, then up to 32 of [0-9A-Za-z._-]",
        ),
        (
            ("trigger", "--serial", "20261399-1"),
            "argument --serial: serial starts with '20261399', which is not a date",
        ),
        (("trigger", "--worker-wait", "-5"), "argument --worker-wait: must be more than 0"),
        (("trigger", "--worker-wait", "0"), "argument --worker-wait: must be more than 0"),
        (("trigger", "--worker-wait", "soon"), "argument --worker-wait: invalid positive_int"),
        (("trigger", "--nosuch"), "unrecognized arguments: --nosuch"),
        (("status", "busybox:1.35:default", "x y"), "argument serial: serial must start with"),
        (("retry", "busybox:1.35:default"), "the following arguments are required: serial"),
        (("promote", "busybox:1.35:default", "2026"), "argument serial: serial must start with"),
        (("show", "busybox:1.35:default", "../.."), "argument serial: serial must start with"),
        (("versions", "x:y:z", "--state", "gone"), "argument --state: invalid choice: 'gone'"),
        (("setup-temporal", "--every-hours", "nan"), "'nan' is not a finite number >= 0"),
        (("setup-temporal", "--every-hours", "0"), "argument --every-hours: must be more than 0"),
        (("setup-temporal", "--every-hours", "-1"), "'-1' is not a finite number >= 0"),
        (("setup-temporal", "--expire-after-days", "inf"), "'inf' is not a finite number >= 0"),
        (("gc", "--grace-days", "inf"), "argument --grace-days: 'inf' is not a finite number >= 0"),
        (("gc", "--grace-days", "a week"), "argument --grace-days: invalid non_negative value"),
        (("export", "/tmp/x"), "the following arguments are required: --channel"),
        (("nosuch",), "argument command: invalid choice: 'nosuch'"),
        (("refresh", "--image"), "argument --image: expected one argument"),
        (("refresh", "--wait", "now"), "unrecognized arguments: now"),
    ],
)
def test_bad_arguments_are_refused_by_argparse(
    args: tuple[str, ...], expected: str, monkeypatch, capsys
) -> None:
    """With an operator token and a Temporal address set, each would otherwise go on (and
    `--serial 'bad serial!'` or `gc --grace-days inf` did, into a traceback)."""
    monkeypatch.setenv("ICEFLOE_TEMPORAL_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("ICEFLOE_OPERATOR_TOKEN", "ifl_ope_x")
    line = refused(capsys, *args)
    assert expected in line, line


@pytest.mark.parametrize(
    "args",
    [("token", "revoke"), ("token", "follow", "1"), ("trigger", "--serial", "bad serial!")],
)
def test_a_refusal_from_the_command_as_run_is_the_usage_and_one_line(
    args: tuple[str, ...], tmp_path
) -> None:
    line = usage_error(icefloe(*args, ICEFLOE_STATE_DIR=str(tmp_path)))
    assert line.startswith(f"icefloe {args[0]}") and ": error: " in line, line
    assert not list(tmp_path.iterdir()), "refused before the server's catalog was opened"


@pytest.mark.temporal
@pytest.mark.parametrize("action", ["status", "retry", "cancel"])
async def test_a_pipeline_that_does_not_exist(temporal: Client, action: str) -> None:
    """Temporal's refusal is the one line, as an unreachable Temporal's is."""
    done = await asyncio.to_thread(
        icefloe,
        action,
        "busybox:nope:default",
        "20200101-1",
        ICEFLOE_TEMPORAL_ADDRESS=temporal.service_client.config.target_host,
        ICEFLOE_TEMPORAL_NAMESPACE=temporal.namespace,
    )
    line = one_line_error(done)
    assert line == (
        "icefloe: Temporal refused it: workflow not found for ID: "
        "icefloe:busybox:nope:default:20200101-1"
    ), line


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
        ({"ICEFLOE_SERVER_PORT": "https"}, "ICEFLOE_SERVER_PORT: Input should be a valid integer"),
        ({"ICEFLOE_SERVER_PROT": "8443"}, "ICEFLOE_SERVER_PROT: Extra inputs are not permitted"),
        ({"ICEFLOE_SERVER_STATE_DIR": "/srv/x"}, "ICEFLOE_SERVER_STATE_DIR is not a setting"),
        ({"ICEFLOE_LOG_LEVEL": "LOUD"}, "ICEFLOE_LOG_LEVEL: Input should be 'DEBUG'"),
    ],
)
def test_a_bad_setting(env: dict[str, str], expected: str) -> None:
    line = one_line_error(icefloe("trigger", **env))
    assert expected in line, line


def test_a_refresh_without_temporal_or_with_a_bad_limit_is_one_line() -> None:
    down = one_line_error(icefloe("refresh", ICEFLOE_TEMPORAL_ADDRESS="127.0.0.1:1"))
    assert "Temporal is not reachable at 127.0.0.1:1" in down, down
    bad = one_line_error(icefloe("refresh", ICEFLOE_REFRESH_MAX_PARALLEL="0"))
    assert "ICEFLOE_REFRESH_MAX_PARALLEL: Input should be greater than 0" in bad, bad


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


def test_a_bad_server_setting_on_the_server_host() -> None:
    """`icefloe token` reads the server's settings: a bad one is named by its variable, not
    taken for a command-line option."""
    line = one_line_error(icefloe("token", "list", ICEFLOE_SERVER_PORT="https"))
    assert "ICEFLOE_SERVER_PORT: Input should be a valid integer" in line, line
