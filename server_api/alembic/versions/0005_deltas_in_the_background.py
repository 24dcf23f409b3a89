"""deltas in the background

A version arch's delta is made after the publish by one server's delta maker: its state
(pending, made, none), why there is none, and the claim of the server making it.
Arches that already have a delta are made; the others are tried once more.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 14:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("versionarch") as batch_op:
        batch_op.add_column(
            sa.Column("delta_state", sa.String(), server_default="pending", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "delta_detail",
                sqlmodel.sql.sqltypes.AutoString(),
                server_default="",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("delta_claim", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("delta_claimed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.create_index("ix_versionarch_delta_state", ["delta_state"], unique=False)
    op.execute("UPDATE versionarch SET delta_state = 'made' WHERE delta_sha256 IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("versionarch") as batch_op:
        batch_op.drop_index("ix_versionarch_delta_state")
        for name in ("delta_claimed_at", "delta_claim", "delta_detail", "delta_state"):
            batch_op.drop_column(name)
