"""`icefloe token` on the server host: the way the first operator token comes to exist.
Runs the real CLI against the catalog of a real server."""

import os
import subprocess
import sys

import pytest

from core.config import REPO_DIR
from harness.publish import move, new_image, next_serial, publish
from harness.servers import RunningServer, http, token
from tests.support import icefloe_token as icefloe


@pytest.mark.slow  # a CLI process per step
def test_token_cli_creates_lists_revokes_and_moves_feeds(tmp_path):
    with RunningServer(tmp_path) as server, http(server) as h:
        made = icefloe(tmp_path, "create", "--name", "ops", "--scope", "operator")
        assert made.returncode == 0, made.stderr
        secret = made.stdout.strip()
        assert secret.startswith("ifl_ope_")
        auth = {"Authorization": f"Bearer {secret}"}
        assert h.get("/api/v1/tokens", headers=auth).status_code == 200

        feed = icefloe(tmp_path, "create", "--name", "fleet", "--feed", "--channel", "testing")
        url = feed.stdout.strip()
        assert "/feeds/iflf_" in url and url.endswith("/")
        path = "/feeds/" + url.split("/feeds/")[1]
        assert h.get(f"{path}streams/v1/index.json").status_code == 200

        listed = icefloe(tmp_path, "list").stdout
        assert "ops" in listed and "operator" in listed and "testing/lxd" in listed
        assert secret not in listed and path not in listed

        assert icefloe(tmp_path, "follow", "1", "--channel", "active").returncode == 0
        assert "active/lxd" in icefloe(tmp_path, "list").stdout
        assert icefloe(tmp_path, "revoke", "1", "--feed").returncode == 0
        assert h.get(f"{path}streams/v1/index.json").status_code == 403
        tokens = h.get("/api/v1/tokens", headers=auth).json()
        token_id = next(t["id"] for t in tokens if t["name"] == "ops")
        assert icefloe(tmp_path, "revoke", str(token_id)).returncode == 0
        assert h.get("/api/v1/tokens", headers=auth).status_code == 401


@pytest.mark.slow  # a CLI process per step
def test_token_cli_bad_input_is_one_line(tmp_path):
    for args, message in [
        (("create",), "--name: String should have at least 1 character"),
        (("create", "--name", "x", "--expires-in", "0"), "greater than 0"),
        (("revoke", "42"), "no token with id 42"),
        (("follow", "7", "--channel", "active"), "no feed credential with id 7"),
    ]:
        r = icefloe(tmp_path, *args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_gc_cli_deletes_files_of_inactive_versions_with_an_operator_token(
    image_server, catalog, tmp_path
):
    image = new_image()
    serial = next_serial()
    publish(catalog, image, serial, tmp=tmp_path)
    move(catalog, image, serial, "testing", "inactive")
    env = {
        "ICEFLOE_SERVER_URL": image_server.url,
        "ICEFLOE_SERVER_CA": str(image_server.server_settings.cert_path),
        "ICEFLOE_LOG_LEVEL": "ERROR",
    }
    run = lambda **extra: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "cli.main", "gc", "--grace-days", "0"],
        capture_output=True,
        text=True,
        cwd=REPO_DIR,
        timeout=60,
        env=os.environ | env | extra,
    )

    refused = run()
    assert refused.returncode == 2 and "operator token" in refused.stderr
    wrong = run(ICEFLOE_OPERATOR_TOKEN=token(image_server, "publisher"))
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1

    done = run(ICEFLOE_OPERATOR_TOKEN=token(image_server, "operator"))
    assert done.returncode == 0, done.stderr
    assert f"{image.name} {serial}" in done.stdout
    assert catalog.version(image.name, serial).arches  # the catalog keeps the record
