"""Engine, schema migrations and sessions.

The schema is Alembic's (server_api/alembic): the server upgrades to head when it
starts, never `create_all`, so SQLite and Postgres catalogs follow the same history.
SQLite gets WAL and a busy timeout so workers and feeds don't block each other.
The server sizes the pool to its worker threads (see `deps`): a thread never waits for
a connection that only a request queued for a thread could give back.
"""

import logging
from pathlib import Path

from sqlalchemy import event, inspect, make_url
from sqlalchemy.engine import Engine
from sqlmodel import create_engine

log = logging.getLogger(__name__)
ALEMBIC_INI = Path(__file__).with_name("alembic.ini")
# The revision that matches catalogs made by `create_all` before migrations existed.
BASELINE = "0001"


def engine_for(url: str, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    pool = {"pool_size": pool_size, "max_overflow": max_overflow}
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, **pool)
    if database := make_url(url).database:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)

    @event.listens_for(engine, "connect")
    def _pragmas(conn, _record) -> None:
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


def migrate(engine: Engine) -> None:
    """Upgrade the catalog to the newest schema; a pre-migration catalog is adopted first."""
    # Alembic logs a dozen INFO lines, some while it is imported: quiet it first, log the gist.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from alembic import command
    from alembic.config import Config
    from alembic.migration import MigrationContext

    cfg = Config(str(ALEMBIC_INI))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        tables = set(inspect(conn).get_table_names())
        if "version" in tables and "alembic_version" not in tables:
            command.stamp(cfg, BASELINE)
        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(cfg, "head")
        after = MigrationContext.configure(conn).get_current_revision()
    if before != after:
        log.info("catalog schema upgraded from %s to %s", before or "nothing", after)


def make_engine(url: str, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    """An engine on an up-to-date catalog."""
    engine = engine_for(url, pool_size, max_overflow)
    migrate(engine)
    return engine
