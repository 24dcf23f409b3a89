"""revoked versions and image holds

A version can be revoked (a new value of the versionstate enum); an image can be held
(who, why, since when), which stops its promotions.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 17:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite stores the enum as VARCHAR without a CHECK: the new value needs nothing there.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TYPE versionstate ADD VALUE IF NOT EXISTS 'revoked'")
    with op.batch_alter_table("image") as batch_op:
        batch_op.add_column(sa.Column("held_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(
            sa.Column("hold_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("held_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    # In place (SQLite >= 3.35 drops a column itself): a batch copy of `image` would drop
    # the table the versions' foreign keys point at.
    with op.batch_alter_table("image", recreate="never") as batch_op:
        batch_op.drop_column("held_at")
        batch_op.drop_column("hold_reason")
        batch_op.drop_column("held_by")
    # Postgres cannot drop an enum value, and older code cannot read it: revoked versions
    # and their events read as inactive instead (the reasons still say revoked).
    op.execute("UPDATE version SET state = 'inactive' WHERE state = 'revoked'")
    for column in ("from_state", "to_state"):
        op.execute(f"UPDATE event SET {column} = 'inactive' WHERE {column} = 'revoked'")
