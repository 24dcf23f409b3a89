"""Settings for clients of Temporal, the image server and LXD (workers, CLI).

Everything comes from ICEFLOE_* environment variables; the defaults describe the
one-machine stack that `deploy/run-local` starts, so the same processes run
unchanged against a Temporal cluster, a remote image server or remote LXD hosts.
"""

import os
from pathlib import Path
from urllib.parse import quote

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The checkout, or site-packages when installed from the wheel.
REPO_DIR = Path(__file__).resolve().parents[1]
IN_CHECKOUT = (REPO_DIR / "pyproject.toml").is_file()
# Where the wheel ships images/ (pyproject.toml maps it into this package).
PACKAGED_IMAGES = Path(__file__).with_name("definitions")


def default_state_dir() -> Path:
    """ICEFLOE_STATE_DIR, else the checkout's .state (run-local, tests), else the systemd units'
    StateDirectory: an installed package has no writable place of its own."""
    if env := os.environ.get("ICEFLOE_STATE_DIR"):
        return Path(env)
    return REPO_DIR / ".state" if IN_CHECKOUT else Path("/var/lib/icefloe")


def default_images_dir() -> Path:
    """ICEFLOE_IMAGES_DIR, else the checkout's images/, else the definitions the wheel ships."""
    if env := os.environ.get("ICEFLOE_IMAGES_DIR"):
        return Path(env)
    return REPO_DIR / "images" if IN_CHECKOUT else PACKAGED_IMAGES


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ICEFLOE_", extra="ignore")

    state_dir: Path = Field(default_factory=default_state_dir)
    # Image definitions `icefloe trigger --image NAME` reads.
    images_dir: Path = Field(default_factory=default_images_dir)

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    # TLS is also on when a CA, a client certificate or an API key is set.
    temporal_tls: bool = False
    temporal_tls_ca: Path | None = None
    temporal_tls_cert: Path | None = None  # a client certificate, with its key
    temporal_tls_key: Path | None = None
    temporal_tls_server_name: str | None = None  # when the certificate names another host
    temporal_api_key: SecretStr | None = None  # Temporal Cloud
    # A profile of the SDK's environment configuration (temporal.toml, TEMPORAL_* variables):
    # what it sets wins over the settings above.
    temporal_profile: str | None = None
    temporal_ui_url: str = "http://127.0.0.1:8233"

    server_url: str = "https://127.0.0.1:8443"
    # PEM of the image server's certificate: pinned by LXD and trusted by httpx.
    # Unset: the local stack's self-signed certificate, else the system CAs.
    server_ca: Path | None = None
    publisher_token: SecretStr | None = None
    operator_token: SecretStr | None = None  # forced promotion, garbage collection

    # Unset: the local LXD unix socket. Remote hosts: https://host:8443 plus a trusted client cert.
    lxd_endpoint: str | None = None
    lxd_cert: Path | None = None
    lxd_key: Path | None = None
    lxd_server_cert: Path | None = None  # a remote LXD's self-signed certificate
    # Test instances live in their own LXD project; arch workers create it if missing.
    lxd_project: str = "icefloe"
    # SIGTERM lets running activities finish for this long before they are cancelled (a
    # service manager's stop timeout must be longer); a test attempt takes minutes.
    graceful_shutdown_s: float = 600
    # host:port where a worker serves the Temporal runtime's Prometheus metrics (task
    # latencies, polls, activity failures); unset: none. One port per worker process.
    metrics_address: str | None = None
    # Busybox-static .debs and build scratch space on arch hosts.
    deb_dir: Path | None = None
    build_dir: Path | None = None

    @model_validator(mode="after")
    def _pairs(self) -> "Settings":
        """A certificate without its key (or a key alone) is refused when read, not at the
        first connection."""
        for cert, key in (("temporal_tls_cert", "temporal_tls_key"), ("lxd_cert", "lxd_key")):
            if (getattr(self, cert) is None) != (getattr(self, key) is None):
                raise ValueError(
                    f"ICEFLOE_{cert.upper()} and ICEFLOE_{key.upper()} go together: set both"
                )
        return self

    @property
    def server_ca_path(self) -> Path | None:
        if self.server_ca:
            return self.server_ca
        local = self.state_dir / "tls" / "server.crt"
        return local if local.exists() else None

    @property
    def publisher_token_value(self) -> str | None:
        if self.publisher_token:
            return self.publisher_token.get_secret_value()
        local = self.state_dir / "publisher.token"
        return local.read_text().strip() if local.exists() else None

    def workflow_ui_link(self, workflow_id: str) -> str:
        return (
            f"{self.temporal_ui_url}/namespaces/{quote(self.temporal_namespace, safe='')}"
            f"/workflows/{quote(workflow_id, safe='')}"
        )
