"""Image server settings (ICEFLOE_SERVER_*): SQLite and a local file store by default."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.config import default_images_dir, default_state_dir


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ICEFLOE_SERVER_", extra="ignore")

    # Else ICEFLOE_STATE_DIR, else the checkout's .state, else /var/lib/icefloe.
    state_dir: Path = Field(default_factory=default_state_dir)
    database_url: str | None = None  # default: SQLite under state_dir; postgresql+psycopg://...
    store_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8443
    tls_cert: Path | None = None  # default: a self-signed certificate made once under state_dir
    tls_key: Path | None = None
    max_upload_bytes: int = 8 * 1024**3
    keep_active: int = 3  # active versions kept per image; older ones go inactive
    # Definitions POST /api/v1/pipelines can name; else ICEFLOE_IMAGES_DIR, else the shipped ones.
    images_dir: Path = Field(default_factory=default_images_dir)
    # Off: only private feeds (/feeds/<secret>/) serve images. The pipeline's test
    # activity launches from /channels/testing/fresh/<tag>/, so keep it on for pipelines.
    public_feeds: bool = True
    # LXD caches a channel's index for up to an hour: a file stays downloadable from a
    # channel this long after its version left it, and gc keeps it that long too.
    channel_file_grace_s: int = Field(default=3600, ge=0)
    # The feeds as static trees for nginx, a CDN or a mirror (server_api.static), rewritten
    # after each catalog change (and checked every static_poll_s for other processes').
    static_dir: Path | None = None  # default: state_dir/static
    static_poll_s: float = Field(default=2.0, gt=0)
    # Behind the project's nginx (deploy/nginx): feed routes answer with X-Accel-Redirect
    # and nginx sends the bytes from the static trees or the store.
    accel_redirect: bool = False
    # One process runs sync routes and file hashing on `threads` worker threads; its
    # database pool holds a connection per thread plus `db_overflow` for sessions closing.
    threads: int = Field(default=40, ge=1)
    db_overflow: int = Field(default=10, ge=0)
    # A request body that sends nothing for this long is cut off with 408; a partial upload
    # untouched for twice as long (a killed server left it) is removed by gc and at start.
    body_idle_timeout_s: float = Field(default=30, gt=0)
    # JSON request bodies larger than this are refused with 413 (uploads: max_upload_bytes).
    max_json_bytes: int = Field(default=1 << 20, ge=1)
    # Deltas are made after the publish by one thread per server (server_api.deltas): a
    # claim on a version arch not renewed for delta_lease_s (its server died) is taken
    # over; other servers' publishes are looked for every delta_poll_s.
    delta_lease_s: float = Field(default=60, gt=0)
    delta_poll_s: float = Field(default=10, gt=0)

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
