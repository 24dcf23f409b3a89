"""`icefloe revoke`, `hold` and `release` against a real server, as an operator runs them:
what they say, and one line (never a traceback) when the server refuses."""

import subprocess

import pytest

from harness.publish import new_image, publish
from harness.servers import RunningServer, token
from tests.support import icefloe_cli

pytestmark = pytest.mark.slow  # a CLI process per step


def test_revoke_hold_and_release_from_the_command_line(tmp_path):
    with RunningServer(tmp_path / "server", keep_active=1) as server:
        ops: dict[str, str] = {}

        def icefloe(*args: str) -> subprocess.CompletedProcess:
            return icefloe_cli(server, *args, **ops)

        image = new_image(arches=["x86_64"])
        old, bad = (
            publish(server, image, tmp=tmp_path / n, to=("testing", "active")).serial
            for n in ("old", "bad")
        )
        nobody = icefloe("revoke", image.name, bad, "--reason", "x")
        assert nobody.returncode == 2 and "revoke needs an operator token" in nobody.stderr
        ops["ICEFLOE_OPERATOR_TOKEN"] = token(server, "operator", "ops-carol")

        done = icefloe("revoke", image.name, bad, "--reason", "kernel panic")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            f"{image.name} {bad} is revoked: in no feed, its files not served",
            f"restored {old} to active in its place",
        ]
        again = icefloe("revoke", image.name, bad, "--reason", "kernel panic")
        assert again.returncode == 2 and "Traceback" not in again.stderr
        assert again.stderr.strip() == (
            f"icefloe: image server said 409: {image.name} {bad} is already revoked"
        )

        held = icefloe("hold", image.name, "--reason", "incident 7")
        assert held.returncode == 0, held.stderr
        assert "is held by ops-carol" in held.stdout
        released = icefloe("release", image.name)
        assert released.returncode == 0 and f"{image.name} is released" in released.stdout
        twice = icefloe("release", image.name)
        assert twice.returncode == 2 and twice.stderr.strip().endswith(f"{image.name} is not held")
