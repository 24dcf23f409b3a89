"""Alembic environment: the catalog's SQLModel metadata, the server's database URL.

`server_api.db.migrate` hands in a live connection; the `alembic` command line builds
an engine from ServerSettings, so both use the same URL rules.
"""

from alembic import context
from sqlmodel import SQLModel

from core.config import Settings
from server_api import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from server_api.db import engine_for

config = context.config
target_metadata = SQLModel.metadata


def _run(connection) -> None:
    # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
if (connection := config.attributes.get("connection")) is not None:
    _run(connection)
else:
    with engine_for(Settings().server.db_url).connect() as conn:
        _run(conn)
