"""How workers and the CLI reach Temporal: TLS with client certificates (proven against nginx
terminating TLS in front of a real dev server, refusing clients without a certificate of its
CA), an API key (Temporal Cloud), or a profile of the SDK's environment configuration."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.service import TLSConfig

from clients.catalog import CatalogClient
from clients.lxd import connect_lxd
from clients.temporal import TemporalUnavailable, connect, connect_options
from core.config import Settings
from core.pipeline import PipelineInput
from harness.publish import busybox_spec
from harness.remote import KeyPair, TestCA, namespace, tls_proxy
from tests.support import assert_no_failed_attempts
from workers.arch import arch_worker
from workers.control import control_worker
from workflows.trigger import new_serial, start_pipeline


def test_an_api_key_is_sent_over_tls() -> None:
    options = connect_options(Settings(temporal_api_key="secret-key"))
    assert options["api_key"] == "secret-key"
    assert options["tls"] is True  # the system's CAs, as Temporal Cloud needs


def test_tls_files_turn_tls_on(tmp_path: Path) -> None:
    """A CA or a client certificate without ICEFLOE_TEMPORAL_TLS=true: TLS, not plaintext
    to a TLS endpoint."""
    ca = TestCA(tmp_path)
    pair = ca.issue("worker", server=False)
    s = Settings(temporal_tls_ca=ca.cert, temporal_tls_cert=pair.cert, temporal_tls_key=pair.key)
    tls = connect_options(s)["tls"]
    assert isinstance(tls, TLSConfig)
    assert tls.server_root_ca_cert == ca.cert.read_bytes()
    assert tls.client_cert == pair.cert.read_bytes()
    assert tls.client_private_key == pair.key.read_bytes()
    assert connect_options(Settings())["tls"] is False


def test_a_client_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ValidationError, match="ICEFLOE_TEMPORAL_TLS_CERT and ICEFLOE_TEMPORAL_TLS_KEY"
    ):
        Settings(temporal_tls_cert=tmp_path / "worker.crt")


def test_a_profile_of_the_sdk_environment_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text(
        '[profile.cloud]\naddress = "ns.acct.tmprl.cloud:7233"\n'
        'namespace = "ns.acct"\napi_key = "from-the-profile"\n'
    )
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    options = connect_options(Settings(temporal_profile="cloud"))
    assert options["target_host"] == "ns.acct.tmprl.cloud:7233"
    assert options["namespace"] == "ns.acct"
    assert options["api_key"] == "from-the-profile"
    assert options["tls"] is True
    with pytest.raises(
        TemporalUnavailable, match="Temporal profile 'nope': Profile 'nope' not found"
    ):
        connect_options(Settings(temporal_profile="nope"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def proxy(temporal: Client, pki: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    upstream = temporal.service_client.config.target_host
    with tls_proxy(upstream, pki, tmp_path_factory.mktemp("nginx")) as address:
        yield address


def over_tls(settings: Settings, address: str, ca: Path, pair: KeyPair | None, ns: str) -> Settings:
    return settings.model_copy(
        update={
            "temporal_address": address,
            "temporal_namespace": ns,
            "temporal_tls": True,
            "temporal_tls_ca": ca,
            "temporal_tls_cert": pair.cert if pair else None,
            "temporal_tls_key": pair.key if pair else None,
        }
    )


@pytest.mark.temporal
async def test_without_a_client_certificate_the_proxy_refuses_and_the_message_says_what_to_check(
    proxy: str, pki: TestCA, settings: Settings
) -> None:
    with pytest.raises(TemporalUnavailable) as err:
        await connect(over_tls(settings, proxy, pki.cert, None, "default"))
    assert f"Temporal is not reachable at {proxy}" in str(err.value)
    assert "ICEFLOE_TEMPORAL_TLS_CERT" in str(err.value)


@pytest.mark.lxd
@pytest.mark.temporal
async def test_a_pipeline_reaches_active_through_the_tls_proxy(
    temporal: Client, proxy: str, pki: TestCA, settings: Settings, catalog: CatalogClient
) -> None:
    """Both workers and the trigger talk to Temporal only through the proxy."""
    ns = "icefloe-tls"
    await namespace(temporal, ns)
    worker_settings = over_tls(settings, proxy, pki.cert, pki.issue("worker", server=False), ns)
    client = await connect(worker_settings)
    assert client.service_client.config.target_host == proxy
    image = busybox_spec("over-tls", checks=["boots", "stop"])
    with ThreadPoolExecutor(max_workers=8) as executor:
        arch = arch_worker(
            client, "x86_64", catalog, lambda: connect_lxd(settings), settings, executor
        )
        async with control_worker(client, catalog, executor), arch:
            handle = await start_pipeline(client, PipelineInput(spec=image, serial=new_serial()))
            result = await handle.result()
    assert result.state == "active", result.message
    await assert_no_failed_attempts(handle)
