"""package manifests

Each version arch may carry a manifest of the packages in its rootfs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 14:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("versionarch") as batch_op:
        batch_op.add_column(
            sa.Column("manifest_sha256", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(sa.Column("manifest_size", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("versionarch") as batch_op:
        batch_op.drop_column("manifest_size")
        batch_op.drop_column("manifest_sha256")
