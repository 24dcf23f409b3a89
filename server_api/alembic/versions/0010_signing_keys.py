"""signing keys

The public half and state of each key the server signs with (provenance, streams): made once
at first start, retired on rotation.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 19:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signingkey",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("purpose", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("keyid", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("public_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("retired_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("keyid"),
    )
    with op.batch_alter_table("signingkey") as batch_op:
        batch_op.create_index(batch_op.f("ix_signingkey_purpose"), ["purpose"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("signingkey") as batch_op:
        batch_op.drop_index(batch_op.f("ix_signingkey_purpose"))
    op.drop_table("signingkey")
