"""Webhook subscriptions and the notices outbox through the real server over HTTPS: the
secret shown once, 422s that name what is wrong, notices written with the state change they
tell of. Delivery itself is tests/server/test_hook_delivery.py's."""

import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from clients.catalog import CatalogRejected
from clients.hooks import HooksClient
from core.catalog import AssessmentReport
from core.config import REPO_DIR
from core.notices import DeliveryState, HookCreate, NoticeCreate, NoticeKind
from harness.processes import environ, free_port
from harness.publish import new_image, publish
from harness.servers import RunningServer, client, http, token


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of its own whose Temporal is nowhere: deliveries stay pending, to be read."""
    nowhere = {"ICEFLOE_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}
    with environ(nowhere), RunningServer(tmp_path_factory.mktemp("hooks")) as running:
        yield running


@pytest.fixture(scope="module")
def ops(server: RunningServer) -> Iterator[HooksClient]:
    api = HooksClient(server.client_settings(), token=token(server, "operator", "ops-bob"))
    yield api
    api.close()


RECEIVER = "https://receiver.example/hook"


def test_a_hooks_secret_is_shown_once_and_never_served_again(ops: HooksClient):
    made = ops.add_hook(HookCreate(url=RECEIVER, events=["version.promoted"]))
    assert len(made.secret) >= 40 and made.created_by == "ops-bob"
    listed = ops._http.get("/api/v1/hooks").text
    assert made.secret not in listed and "secret" not in listed
    assert made.secret not in ops._http.get(f"/api/v1/hooks/{made.id}/deliveries").text


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("ftp://receiver.example/x", "not an http:// or https:// URL"),
        ("receiver.example/hook", "not an http:// or https:// URL"),
        ("https://user:pw@receiver.example/", "carries credentials"),
        ("https://127.0.0.1:9/hook", "loopback or link-local target (127.0.0.1)"),
        ("https://localhost/hook", "loopback or link-local target"),
        ("https://[::1]/hook", "loopback or link-local target (::1)"),
        ("http://169.254.169.254/latest", "loopback or link-local target (169.254.169.254)"),
        ("https://receiver.example:99999/", "is not a URL"),
    ],
)
def test_a_bad_or_local_url_gets_a_422_that_names_it(ops: HooksClient, url: str, said: str):
    with pytest.raises(CatalogRejected) as refused:
        ops.add_hook(HookCreate(url=url))
    assert refused.value.status_code == 422
    assert url in str(refused.value) and said in str(refused.value)


def test_an_unknown_event_gets_a_422_that_names_it(ops: HooksClient):
    with pytest.raises(CatalogRejected) as refused:
        ops.add_hook(HookCreate(url=RECEIVER, events=["version.promoted", "version.exploded"]))
    assert refused.value.status_code == 422 and "'version.exploded'" in str(refused.value)


def test_hooks_need_an_operator(server: RunningServer):
    with http(server) as anonymous:
        assert anonymous.get("/api/v1/hooks").status_code == 401
    with closing(client(server, server.token)) as publisher:
        answer = publisher._http.post("/api/v1/hooks", json={"url": RECEIVER})
    assert answer.status_code == 403 and "needs operator" in answer.text


def test_state_changes_and_failed_checks_write_notices_for_the_hooks_that_want_them(
    server: RunningServer, ops: HooksClient, tmp_path: Path
):
    every = ops.add_hook(HookCreate(url=RECEIVER))
    promoted_only = ops.add_hook(HookCreate(url=RECEIVER, events=["version.promoted"]))
    image = new_image()
    version = publish(server, image, tmp=tmp_path, to=["testing"])
    failed = AssessmentReport(arch="x86_64", check="boots", host="h", state="failed", evidence="x")
    with closing(client(server, server.token)) as publisher:
        publisher.record(image.name, version.serial, failed)
        publisher.record(image.name, version.serial, failed)  # the same failure again: no event
    kinds = [(d.kind, d.state) for d in ops.deliveries(every.id) if d.image == image.name]
    assert kinds == [
        (NoticeKind.check_failed, DeliveryState.pending),
        (NoticeKind.version_testing, DeliveryState.pending),
    ]
    assert [d for d in ops.deliveries(promoted_only.id) if d.image == image.name] == []
    with http(server) as anonymous:
        metrics = anonymous.get("/metrics").text
    assert 'icefloe_hook_deliveries{state="pending"}' in metrics


def test_a_workflows_notice_is_recorded_once_per_key(server: RunningServer, ops: HooksClient):
    hook = ops.add_hook(HookCreate(url=RECEIVER, events=["machinery.failed"]))
    notice = NoticeCreate(kind=NoticeKind.machinery_failed, image="busybox:k", key="wf:1")
    with closing(client(server, server.token)) as publisher:
        first, again = publisher.record_notice(notice), publisher.record_notice(notice)
        server_kind = notice.model_copy(update={"kind": NoticeKind.version_promoted, "key": "k2"})
        with pytest.raises(CatalogRejected) as refused:
            publisher.record_notice(server_kind)
    assert first.created and not again.created and first.event_id == again.event_id
    assert [d.event_id for d in ops.deliveries(hook.id)] == [first.event_id]
    assert refused.value.status_code == 422 and "recorded by the server itself" in str(
        refused.value
    )


def test_the_cli_adds_lists_shows_deliveries_and_removes(server: RunningServer, ops: HooksClient):
    secret = token(server, "operator", "ops-cli")
    env = {
        "ICEFLOE_SERVER_URL": server.url,
        "ICEFLOE_SERVER_CA": str(server.server_settings.cert_path),
        "ICEFLOE_OPERATOR_TOKEN": secret,
    }

    def icefloe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "hook", *args],
            env=env | {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_DIR)},
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=60,
        )

    added = icefloe("add", RECEIVER, "--event", "version.testing", "--format", "slack")
    assert added.returncode == 0, added.stderr
    hook_id = int(added.stdout.split()[1].rstrip(":"))
    shown_secret = added.stdout.split()[-1]
    listed = icefloe("list")
    assert f"hook {hook_id:>4}  {RECEIVER}  slack  version.testing" in listed.stdout
    assert shown_secret not in listed.stdout
    assert icefloe("deliveries", str(hook_id)).returncode == 0
    local = icefloe("add", "https://127.0.0.1/x")
    assert local.returncode == 2 and local.stderr.count("\n") == 1 and "loopback" in local.stderr
    unknown = icefloe("add", RECEIVER, "--event", "version.exploded")
    assert unknown.returncode == 2 and "invalid choice: 'version.exploded'" in unknown.stderr
    assert icefloe("remove", str(hook_id)).stdout.startswith(f"removed hook {hook_id}")
    assert all(h.id != hook_id for h in ops.hooks())
    with pytest.raises(CatalogRejected) as gone:
        ops.deliveries(hook_id)
    assert gone.value.status_code == 404


def test_a_bad_hook_id_is_a_4xx(ops: HooksClient):
    for path in ("/api/v1/hooks/0/deliveries", "/api/v1/hooks/99999999999/deliveries"):
        assert ops._http.get(path).status_code == 422
    assert ops._http.delete("/api/v1/hooks/12345").status_code == 404


def test_a_revoke_that_restores_tells_of_the_revoke_and_the_restore_not_a_promotion(
    server: RunningServer, ops: HooksClient, tmp_path: Path
):
    every = ops.add_hook(HookCreate(url=RECEIVER))
    image = new_image(arches=["x86_64"])
    keep = server.server_settings.keep_active
    serials = [
        publish(server, image, tmp=tmp_path / str(i), to=["testing", "active"]).serial
        for i in range(keep + 1)
    ]  # retention retired the oldest
    with closing(client(server, token(server, "operator", "ops-carol"))) as operator:
        operator.revoke(image.name, serials[-1], "bad in production")
    told = [(d.kind, d.serial) for d in ops.deliveries(every.id) if d.image == image.name]
    assert told[:2] == [
        (NoticeKind.version_restored, serials[0]),
        (NoticeKind.version_revoked, serials[-1]),
    ]  # newest first
    promoted = [s or "" for k, s in told if k == NoticeKind.version_promoted]
    assert sorted(promoted) == serials
