"""rootfs deltas

Each version arch may carry an xdelta3 delta of its rootfs from an earlier version's.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 12:35:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("delta_base", "delta_sha256", "delta_size")


def upgrade() -> None:
    with op.batch_alter_table("versionarch") as batch_op:
        batch_op.add_column(
            sa.Column("delta_base", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("delta_sha256", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(sa.Column("delta_size", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("versionarch") as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(name)
