"""Every ICEFLOE_* setting, read from the environment in one place (`Settings()`).

The defaults are those of an installed host (the systemd units' /var/lib/icefloe, the image
definitions the package ships); `deploy/run-local` and `deploy/test` point ICEFLOE_STATE_DIR
at the checkout's `.state`. The same processes run unchanged against a Temporal cluster, a
remote image server or remote LXD hosts. `docs/configuration.md` is generated from the
descriptions here (`python -m deploy.configdoc`).
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.refresh import DEFAULT_MAX_PARALLEL

# The checkout, or site-packages when installed from the wheel.
REPO_DIR = Path(__file__).resolve().parents[1]
# The image definitions the package ships: the wheel maps images/ here, a checkout links it.
PACKAGED_IMAGES = Path(__file__).with_name("definitions")
# What the systemd units' StateDirectory= makes: an installed package has no place of its own.
DEFAULT_STATE_DIR = Path("/var/lib/icefloe")
PREFIX = "ICEFLOE_"
GIB = 1024**3
# How long an arch host keeps a suite's InRelease (ICEFLOE_INPUTS_TTL_S).
INPUTS_TTL_S = 120.0


def host_slots(cores: int, memory_bytes: int) -> tuple[int, int]:
    """(builds, test instances) an arch worker runs at once by default. A build (debootstrap,
    mksquashfs) keeps a core busy and may take about 2 GiB with its page cache: half the
    cores, one per 2 GiB. A test instance mostly waits (boot, DHCP, reboot, the checks' execs;
    bench/parallel.py: 8 per worker on 2 cores beat 4 by 1.6x, nothing failing): four per
    core, one per GiB (a Debian container uses a few hundred MB). At least one of each."""
    gib = memory_bytes // GIB
    return max(1, min(cores // 2, gib // 2)), max(1, min(cores * 4, gib))


def this_host() -> tuple[int, int]:
    """This host's cores and memory, for host_slots."""
    return os.cpu_count() or 1, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class ServerSettings(BaseModel):
    """The image server: where it listens and keeps its catalog, how clients reach it."""

    model_config = ConfigDict(extra="forbid")
    # Not variables of their own: Settings fills them from ICEFLOE_STATE_DIR and _IMAGES_DIR.
    SHARED: ClassVar = ("state_dir", "images_dir")

    state_dir: Path = DEFAULT_STATE_DIR
    images_dir: Path = PACKAGED_IMAGES

    url: str = Field(
        "https://127.0.0.1:8443",
        description="the image server as clients and LXD hosts reach it (workers, `trigger`, "
        "`gc`; on the server host the base of the private feed URLs `token create` prints)",
    )
    ca: Path | None = Field(
        None,
        description="PEM of the server's certificate or its CA, trusted by clients and pinned "
        "by LXD; unset: `<state dir>/tls/server.crt` when it exists, else the system CAs",
    )
    host: str = Field("127.0.0.1", description="address the server listens on")
    port: int = Field(8443, description="port the server listens on (HTTPS)")
    database_url: str | None = Field(
        None,
        description="the catalog's database, e.g. `postgresql+psycopg://user:pw@db/icefloe`; "
        "unset: SQLite in `<state dir>/catalog.db`",
    )
    store_dir: Path | None = Field(None, description="the file store; unset: `<state dir>/files`")
    tls_cert: Path | None = Field(
        None,
        description="the server's certificate; unset: a self-signed one made once in "
        "`<state dir>/tls/server.crt`",
    )
    tls_key: Path | None = Field(None, description="its key; unset: `<state dir>/tls/server.key`")
    provenance_key: Path | None = Field(
        None,
        description="the ed25519 key (PEM, 0600) that signs each version's attestations, made "
        "at first start and never served; unset: `<state dir>/keys/provenance.key`",
    )
    max_upload_bytes: int = Field(8 * 1024**3, description="largest file an upload may declare")
    keep_active: int = Field(
        3, description="active versions kept per image; activating a newer one retires the oldest"
    )
    public_feeds: bool = Field(
        True,
        description="off: only private feeds (`/feeds/<secret>/`) serve images, the pages, read "
        "APIs and API document need a token and `/metrics` a metrics or operator one; pipelines "
        "test from the public testing channel, so keep it on for them",
    )
    channel_file_grace_s: int = Field(
        3600,
        ge=0,
        description="a file stays downloadable from a channel this long after its version "
        "left it (LXD caches a channel's index for up to an hour); gc keeps it as long",
    )
    static_dir: Path | None = Field(
        None,
        description="the feeds as static trees for nginx, a CDN or a mirror, rewritten after "
        "each catalog change; unset: `<state dir>/static`",
    )
    static_poll_s: float = Field(
        2.0, gt=0, description="how often the static trees are checked for other servers' changes"
    )
    accel_redirect: bool = Field(
        False,
        description="behind the project's nginx (deploy/nginx): feed routes answer with "
        "X-Accel-Redirect and nginx sends the bytes",
    )
    threads: int = Field(
        40, ge=1, description="worker threads for sync routes and file hashing, per process"
    )
    db_overflow: int = Field(
        10,
        ge=0,
        description="database connections beyond one per thread, for sessions closing",
    )
    body_idle_timeout_s: float = Field(
        30,
        gt=0,
        description="a request body that sends nothing this long is cut off with 408; a "
        "partial upload untouched twice as long (a killed server left it) is removed by gc "
        "and at start",
    )
    max_json_bytes: int = Field(
        1 << 20, ge=1, description="JSON request bodies larger than this are refused with 413"
    )
    delta_lease_s: float = Field(
        60,
        gt=0,
        description="a server's claim on making a delta, not renewed this long (the server "
        "died), is taken over by another",
    )
    delta_poll_s: float = Field(
        10, gt=0, description="how often a server looks for other servers' publishes to delta"
    )
    worker_watch_s: float = Field(
        30,
        ge=0,
        description="how often the server asks Temporal which arches' task queues a worker "
        "polls (`icefloe_worker_up`, for the alert rules in deploy/prometheus/); 0: never",
    )

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'catalog.db'}"

    @property
    def files_dir(self) -> Path:
        return self.store_dir or self.state_dir / "files"

    @property
    def static_root(self) -> Path:
        return self.static_dir or self.state_dir / "static"

    @property
    def cert_path(self) -> Path:
        return self.tls_cert or self.state_dir / "tls" / "server.crt"

    @property
    def key_path(self) -> Path:
        return self.tls_key or self.state_dir / "tls" / "server.key"

    @property
    def provenance_key_path(self) -> Path:
        return self.provenance_key or self.state_dir / "keys" / "provenance.key"

    @property
    def gnupg_home(self) -> Path:
        """The GnuPG home of the key that signs the feeds (server_api.sjson)."""
        return self.state_dir / "keys" / "gnupg"


class Settings(BaseSettings):
    """ICEFLOE_<FIELD>, and ICEFLOE_SERVER_<FIELD> for the image server's group."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_nested_delimiter="_", env_nested_max_split=1, extra="ignore"
    )

    state_dir: Path = Field(
        DEFAULT_STATE_DIR,
        description="state of every process on this host: the server's catalog, files and "
        "certificate, the arch workers' debs and builds, the local stack's token and Temporal "
        "database (`deploy/run-local` and `deploy/test` set the checkout's `.state`)",
    )
    images_dir: Path = Field(
        PACKAGED_IMAGES,
        description="image definitions `icefloe trigger --image NAME` and "
        "`POST /api/v1/pipelines` name; default: the ones the package ships",
    )
    refresh_max_parallel: int = Field(
        DEFAULT_MAX_PARALLEL,
        gt=0,
        description="how many image pipelines a refresh runs at once (the arch workers' "
        "own limits still bound the builds and tests on each host)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="level of the `icefloe` commands' logs"
    )

    temporal_address: str = Field("127.0.0.1:7233", description="Temporal's frontend, host:port")
    temporal_namespace: str = Field("default", description="Temporal namespace")
    temporal_tls: bool = Field(
        False, description="TLS to Temporal; also on when a CA, client certificate or key is set"
    )
    temporal_tls_ca: Path | None = Field(None, description="PEM of a private Temporal CA")
    temporal_tls_cert: Path | None = Field(
        None, description="a client certificate for Temporal (with its key)"
    )
    temporal_tls_key: Path | None = Field(None, description="the client certificate's key")
    temporal_tls_server_name: str | None = Field(
        None, description="the name Temporal's certificate has, when not its address's host"
    )
    temporal_api_key: SecretStr | None = Field(None, description="Temporal Cloud's API key")
    temporal_profile: str | None = Field(
        None,
        description="a profile of the Temporal SDK's environment configuration "
        "(`temporal.toml`, `TEMPORAL_*`); what it sets wins over the settings above",
    )
    temporal_ui_url: str = Field(
        "http://127.0.0.1:8233",
        description="the Temporal UI, for the links commands print; `icefloe up` serves the "
        "UI on its port",
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    publisher_token: SecretStr | None = Field(
        None,
        description="token that publishes versions and reports results (workers, `trigger`); "
        "unset: `<state dir>/publisher.token` (the local stack's) when it exists",
    )
    operator_token: SecretStr | None = Field(
        None, description="token for forced promotion and `icefloe gc`"
    )
    reader_token: SecretStr | None = Field(
        None,
        description="a reader token (`icefloe token create --scope reader`) `icefloe verify` "
        "sends for a version's statements, which a server with public feeds off requires",
    )
    pinned_keys: Path | None = Field(
        None,
        description="the servers' provenance keys `icefloe pin` saved and `icefloe verify` "
        "trusts (no other); unset: `$XDG_CONFIG_HOME/icefloe/pinned-keys.json`, "
        "`~/.config/icefloe/pinned-keys.json` without it",
    )

    hooks_allow_local_targets: bool = Field(
        False,
        description="let webhooks go to loopback and link-local addresses (the tests' "
        "receivers); off, such a hook is refused with 422 and a delivery there fails",
    )
    hooks_ca: Path | None = Field(
        None, description="PEM of a CA webhook receivers' certificates may have; unset: system CAs"
    )
    hooks_timeout_s: float = Field(
        10, gt=0, description="a webhook receiver that takes longer to answer fails the attempt"
    )
    hooks_retry_initial_s: float = Field(
        10, gt=0, description="the wait before a failed delivery's first retry; it doubles"
    )
    hooks_retry_max_s: float = Field(
        3600, gt=0, description="the longest wait between two attempts of a delivery"
    )
    hooks_retry_for_s: float = Field(
        2 * 86400,
        ge=86400,
        description="how long a delivery is retried before it is given up (failed); at "
        "least a day, so a receiver down for hours still gets every event",
    )
    hooks_dispatch_poll_s: float = Field(
        5,
        gt=0,
        description="how often a server looks for deliveries not yet started (another "
        "server's, or one its own start left when it died); its own start them at once",
    )

    lxd_endpoint: str | None = Field(
        None, description="a remote LXD's https://host:8443; unset: the local unix socket"
    )
    lxd_cert: Path | None = Field(
        None, description="client certificate the remote LXD trusts (`lxc config trust add`)"
    )
    lxd_key: Path | None = Field(None, description="the client certificate's key")
    lxd_server_cert: Path | None = Field(
        None, description="a remote LXD's self-signed certificate, pinned"
    )
    lxd_project: str = Field(
        "icefloe", description="LXD project of test instances; arch workers create it if missing"
    )
    graceful_shutdown_s: float = Field(
        600,
        description="SIGTERM lets a worker's running activities finish this long before they "
        "are cancelled; a service manager's stop timeout must be longer",
    )
    janitor_every_s: float = Field(
        600,
        gt=0,
        description="how often an arch worker deletes test instances whose pipeline no longer "
        "runs (a worker that died left them); it also sweeps once when it starts",
    )
    metrics_address: str | None = Field(
        None,
        description="host:port where a worker serves the Temporal runtime's Prometheus metrics; "
        "one port per worker process",
    )
    worker_max_builds: int | None = Field(
        None,
        ge=1,
        description="builds an arch worker runs at once, whatever the number of pipelines; "
        "more wait their turn in arrival order; unset: half the host's cores, at most one "
        "per 2 GiB of memory, at least 1",
    )
    worker_max_tests: int | None = Field(
        None,
        ge=1,
        description="test instances an arch worker runs at once (each test activity runs one "
        "at a time); unset: four per core, at most one per GiB of memory, at least 1",
    )
    deb_dir: Path | None = Field(
        None, description="busybox-static .debs on arch hosts; unset: `<state dir>/debs`"
    )
    build_dir: Path | None = Field(
        None, description="build scratch space on arch hosts; unset: `<state dir>/builds`"
    )
    inputs_ttl_s: float = Field(
        INPUTS_TTL_S,
        ge=0,
        description="an arch host downloads a suite's InRelease at most once this long, for "
        "every pipeline's check of what it would build from (long enough for one refresh's "
        "pipelines to share it, short enough that the next sees the mirror as it is)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        """Refused when read, not at the first connection: a certificate without its key,
        and a server state or images directory apart from the one of ICEFLOE_STATE_DIR."""
        for cert, key in (("temporal_tls_cert", "temporal_tls_key"), ("lxd_cert", "lxd_key")):
            if (getattr(self, cert) is None) != (getattr(self, key) is None):
                raise ValueError(f"{env_name(cert)} and {env_name(key)} go together: set both")
        shared = {name: getattr(self, name) for name in ServerSettings.SHARED}
        for name, value in shared.items():
            if name in self.server.model_fields_set and getattr(self.server, name) != value:
                raise ValueError(
                    f"{env_name('server_' + name)} is not a setting: the server uses "
                    f"{env_name(name)} like every other process"
                )
        self.server = self.server.model_copy(update=shared)
        return self

    def worker_slots(self) -> tuple[int, int]:
        """(builds, test instances) at once: the settings, else sized from this host."""
        builds, tests = host_slots(*this_host())
        return self.worker_max_builds or builds, self.worker_max_tests or tests

    @property
    def pinned_keys_path(self) -> Path:
        if self.pinned_keys:
            return self.pinned_keys
        config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
        return Path(config) / "icefloe" / "pinned-keys.json"

    def workflow_ui_link(self, workflow_id: str) -> str:
        return (
            f"{self.temporal_ui_url}/namespaces/{quote(self.temporal_namespace, safe='')}"
            f"/workflows/{quote(workflow_id, safe='')}"
        )


def env_name(*path: str | int) -> str:
    """A field's variable, by its path in Settings: ("server", "port") -> ICEFLOE_SERVER_PORT."""
    return PREFIX + "_".join(str(p) for p in path).upper()


def variables(
    model: type[BaseModel] = Settings, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    """Every setting as (its path in Settings, its field), in declaration order."""
    for name, field in model.model_fields.items():
        if issubclass(model, ServerSettings) and name in ServerSettings.SHARED:
            continue
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from variables(field.annotation, (*path, name))
        else:
            yield (*path, name), field


def environment(settings: Settings) -> dict[str, str]:
    """The settings as the variables that make them again in a child process."""
    env = {}
    for path, _ in variables():
        value: Any = settings
        for name in path:
            value = getattr(value, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is not None:
            env[env_name(*path)] = str(value).lower() if isinstance(value, bool) else str(value)
    return env
