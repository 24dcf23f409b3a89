"""An arch worker on another machine than its LXD: it drives the LXD API over HTTPS with a
client certificate the LXD trusts, pinning the LXD's own certificate. Played on this host by
opening this LXD's API on a loopback port (undone afterwards)."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.lxd_test.instances import LABEL, listed
from clients.catalog import CatalogClient
from clients.lxd import LxdUnavailable, connect_lxd, host_arches
from core.config import Settings
from core.pipeline import PipelineInput
from harness.publish import busybox_spec
from harness.remote import LxdEndpoint, TestCA, lxd_over_https, namespace, self_signed_client
from tests.support import assert_no_failed_attempts, nothing_left
from workers.arch import arch_worker
from workers.control import control_worker
from workflows.trigger import new_serial, start_pipeline

pytestmark = [pytest.mark.lxd, pytest.mark.temporal]


@pytest.fixture(scope="module")
def lxd_https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LxdEndpoint]:
    with lxd_over_https(tmp_path_factory.mktemp("lxd-https")) as endpoint:
        yield endpoint


def remote(settings: Settings, endpoint: LxdEndpoint, **overrides: object) -> Settings:
    """The settings of an arch worker whose LXD is `endpoint` (the unix socket unused)."""
    fields = {
        "lxd_endpoint": endpoint.url,
        "lxd_cert": endpoint.client.cert,
        "lxd_key": endpoint.client.key,
        "lxd_server_cert": endpoint.server_cert,
    }
    return settings.model_copy(update=fields | overrides)


def test_trusted_client_reaches_lxd_over_https(lxd_https: LxdEndpoint, settings: Settings) -> None:
    lxd = connect_lxd(remote(settings, lxd_https))
    assert lxd.api.scheme == "https"
    assert lxd.host_info["auth"] == "trusted"
    assert "x86_64" in host_arches(lxd)


def test_the_pin_holds_with_a_ca_bundle_in_the_environment(
    lxd_https: LxdEndpoint, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests puts REQUESTS_CA_BUNDLE (set on many hosts) in place of a pinned certificate."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(TestCA(tmp_path).cert))
    assert connect_lxd(remote(settings, lxd_https)).host_info["auth"] == "trusted"


def test_untrusted_client_certificate_is_refused_with_the_fix(
    lxd_https: LxdEndpoint, settings: Settings, tmp_path: Path
) -> None:
    stranger = self_signed_client(tmp_path, "stranger")
    with pytest.raises(LxdUnavailable) as err:
        connect_lxd(remote(settings, lxd_https, lxd_cert=stranger.cert, lxd_key=stranger.key))
    message = str(err.value)
    assert f"the LXD at {lxd_https.url} does not trust the client certificate" in message
    assert f"lxc config trust add {stranger.cert}" in message


def test_lxd_with_another_certificate_than_the_pinned_one_is_refused(
    lxd_https: LxdEndpoint, settings: Settings, tmp_path: Path
) -> None:
    impostor = TestCA(tmp_path).cert
    with pytest.raises(LxdUnavailable, match=f"LXD is not reachable at {lxd_https.url}"):
        connect_lxd(remote(settings, lxd_https, lxd_server_cert=impostor))


async def test_arch_worker_over_https_takes_a_version_to_active(
    temporal: Client, lxd_https: LxdEndpoint, catalog: CatalogClient, settings: Settings
) -> None:
    """In a namespace of its own, so only this worker, on the HTTPS endpoint, can take the
    build and the test."""
    client = await namespace(temporal, "icefloe-remote-lxd")
    over_https = remote(settings, lxd_https)
    image = busybox_spec("remote-lxd", checks=["boots", "ipv4", "stop"])
    serial = new_serial()
    with ThreadPoolExecutor(max_workers=8) as executor:
        worker = arch_worker(
            client, "x86_64", catalog, lambda: connect_lxd(over_https), over_https, executor
        )
        async with control_worker(client, catalog, executor), worker:
            handle = await start_pipeline(client, PipelineInput(spec=image, serial=serial))
            result = await handle.result()

    assert result.state == "active", result.message
    assert {c.check: c.state for c in result.tests[0].checks} == dict.fromkeys(
        ("boots", "ipv4", "stop"), "passed"
    )
    await assert_no_failed_attempts(handle)
    lxd = connect_lxd(settings)
    await nothing_left(
        lambda: [i.name for i in listed(lxd) if i.config.get(f"{LABEL}serial") == serial],
        f"test instance of {serial}",
    )
