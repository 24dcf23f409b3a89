"""One loader for every ICEFLOE_* variable: the server's group, one state directory, and the
settings handed to child processes as the variables that make them again."""

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.config import Settings, environment


def test_the_server_group_reads_its_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICEFLOE_STATE_DIR", "/srv/state")
    monkeypatch.setenv("ICEFLOE_SERVER_PORT", "9443")
    monkeypatch.setenv("ICEFLOE_SERVER_URL", "https://images.example")
    monkeypatch.setenv("ICEFLOE_SERVER_TLS_CERT", "/etc/icefloe/server.crt")
    s = Settings()
    assert (s.server.port, s.server.url) == (9443, "https://images.example")
    assert s.server.cert_path == Path("/etc/icefloe/server.crt")
    assert s.server.db_url == "sqlite:////srv/state/catalog.db"  # the one state directory


def test_the_server_has_no_state_directory_of_its_own() -> None:
    s = Settings(state_dir=Path("/srv/a"), server={"state_dir": Path("/srv/a")})
    assert s.server.state_dir == Path("/srv/a")  # the same one is harmless
    with pytest.raises(ValidationError, match="ICEFLOE_SERVER_STATE_DIR is not a setting"):
        Settings(state_dir=Path("/srv/a"), server={"state_dir": Path("/srv/b")})
    with pytest.raises(ValidationError, match="ICEFLOE_SERVER_IMAGES_DIR is not a setting"):
        Settings(server={"images_dir": Path("/srv/images")})


def test_the_environment_makes_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `icefloe up` gives its children: every setting, secrets and the group included."""
    given = Settings(
        state_dir=Path("/srv/state"),
        temporal_address="127.0.0.1:17233",
        temporal_tls=True,
        publisher_token="s3cret",
        server={"port": 18443, "url": "https://127.0.0.1:18443", "public_feeds": False},
        graceful_shutdown_s=12.5,
    )
    env = environment(given)
    assert env["ICEFLOE_SERVER_PUBLIC_FEEDS"] == "false"
    assert not any(name.startswith("ICEFLOE_SERVER_STATE") for name in env)
    for name in [n for n in os.environ if n.startswith("ICEFLOE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings() == given


def test_worker_slots_are_sized_from_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds: half the cores, one per 2 GiB; test instances: four per core, one per GiB."""
    from core.config import GIB, host_slots

    assert host_slots(2, 23 * GIB) == (1, 8)  # this machine
    assert host_slots(16, 128 * GIB) == (8, 64)
    assert host_slots(16, 8 * GIB) == (4, 8)  # memory bounds both
    assert host_slots(1, GIB // 2) == (1, 1)  # never none
    monkeypatch.setenv("ICEFLOE_WORKER_MAX_BUILDS", "3")
    builds, tests = Settings().worker_slots()
    assert builds == 3 and tests >= 1  # the other one still from the host
    monkeypatch.setenv("ICEFLOE_WORKER_MAX_TESTS", "0")
    with pytest.raises(ValidationError, match="worker_max_tests"):
        Settings()


def test_deliveries_are_retried_for_at_least_a_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICEFLOE_HOOKS_RETRY_FOR_S", "3600")
    with pytest.raises(ValidationError, match="greater than or equal to 86400"):
        Settings()
    monkeypatch.setenv("ICEFLOE_HOOKS_RETRY_FOR_S", "86400")
    assert Settings().hooks_retry_for_s == 86400
