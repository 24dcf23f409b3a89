"""Remote endpoints made real on this host, for the many-machine tests: a test CA and the
certificates it signs, nginx terminating TLS (client certificates required) in front of a
Temporal server, and this LXD's HTTPS API trusting a client certificate of the test's own.
Each is a context manager that undoes what it did: processes stopped by PID, the trust entry
removed, LXD's `core.https_address` restored."""

import datetime
import ipaddress
import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from clients.temporal import register
from harness.processes import LOOPBACK, free_port, start, stop, wait_for_port


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey):
    directory.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pair.key.chmod(0o600)
    return pair


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey],
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0])
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
    )


class TestCA:
    """A certificate authority of the test's own: server certificates for loopback, client
    certificates for workers."""

    __test__ = False  # not a test class

    def __init__(self, directory: Path, name: str = "icefloe test CA") -> None:
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            _certificate(name, self._key, (_name(name), self._key))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self._name = cert.subject
        self.cert = _write(directory, "ca", cert, self._key).cert

    def issue(self, stem: str, *, server: bool) -> KeyPair:
        """A key and certificate signed by this CA: for 127.0.0.1 (server) or a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = _certificate(stem, key, (self._name, self._key)).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        if server:
            san = [x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return _write(self.directory, stem, builder.sign(self._key, hashes.SHA256()), key)


def self_signed_client(directory: Path, stem: str) -> KeyPair:
    """A self-signed client certificate, the kind an LXD trust store takes."""
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (
        _certificate(stem, key, (_name(stem), key))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA384())
    )
    return _write(directory, stem, cert, key)


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    assert found, "no nginx here: deploy/setup-host installs it (nginx, libnginx-mod-stream)"
    return found


@contextmanager
def tls_proxy(upstream: str, ca: TestCA, work: Path) -> Iterator[str]:
    """nginx terminating TLS in front of `upstream` (host:port), refusing clients without a
    certificate from `ca`; its address. The stream module passes raw bytes after the
    handshake, and `ssl_alpn h2` answers the ALPN that gRPC clients insist on."""
    work.mkdir(parents=True, exist_ok=True)
    server = ca.issue("proxy", server=True)
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(
        f"""load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log notice;
events {{ worker_connections 256; }}
stream {{
    server {{
        listen {LOOPBACK}:{port} ssl;
        ssl_certificate {server.cert};
        ssl_certificate_key {server.key};
        ssl_client_certificate {ca.cert};
        ssl_verify_client on;
        ssl_alpn h2;
        proxy_pass {upstream};
        proxy_timeout 10m;
    }}
}}
"""
    )
    log = work / "nginx.out"
    proc = start(
        [nginx_binary(), "-p", work, "-e", work / "error.log", "-c", conf, "-g", "daemon off;"], log
    )
    try:
        wait_for_port(port, proc, log)
        yield f"{LOOPBACK}:{port}"
    finally:
        stop(proc)


@dataclass(frozen=True)
class LxdEndpoint:
    url: str
    client: KeyPair
    server_cert: Path

    def env(self) -> dict[str, str]:
        """The settings of an arch worker that drives this LXD over HTTPS."""
        return {
            "ICEFLOE_LXD_ENDPOINT": self.url,
            "ICEFLOE_LXD_CERT": str(self.client.cert),
            "ICEFLOE_LXD_KEY": str(self.client.key),
            "ICEFLOE_LXD_SERVER_CERT": str(self.server_cert),
        }


def lxc(*args: str) -> str:
    return subprocess.run(
        ["lxc", *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def fingerprint(cert: Path) -> str:
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    return loaded.fingerprint(hashes.SHA256()).hex()


@contextmanager
def lxd_over_https(work: Path) -> Iterator[LxdEndpoint]:
    """This LXD's API on a loopback port, trusting a client certificate made here, as a remote
    LXD host is set up for an arch worker. Undone afterwards: the trust entry is removed and
    `core.https_address` gets its old value back."""
    old = lxc("config", "get", "core.https_address")
    client = self_signed_client(work, "arch-worker")
    server_cert = work / "lxd-server.crt"
    port = free_port()
    lxc("config", "set", "core.https_address", f"{LOOPBACK}:{port}")
    try:
        lxc("config", "trust", "add", str(client.cert), "--name", f"icefloe-test-{port}")
        try:
            # What an operator copies from the LXD host (`lxc info` shows it too).
            server_cert.write_text(json.loads(lxc("query", "/1.0"))["environment"]["certificate"])
            yield LxdEndpoint(f"https://{LOOPBACK}:{port}", client, server_cert)
        finally:
            lxc("config", "trust", "remove", fingerprint(client.cert))
    finally:
        if old:
            lxc("config", "set", "core.https_address", old)
        else:
            lxc("config", "unset", "core.https_address")


async def namespace(temporal: Client, name: str) -> Client:
    """A client of namespace `name` (made unless it exists) with Icefloe's search attributes:
    workers there are the only ones that can take its tasks."""
    try:
        await temporal.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=name, workflow_execution_retention_period=Duration(seconds=86400)
            )
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.ALREADY_EXISTS:
            raise
    client = Client(temporal.service_client, namespace=name, data_converter=pydantic_data_converter)
    await register(client)
    return client
