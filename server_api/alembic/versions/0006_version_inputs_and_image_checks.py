"""version inputs and image checks

A version keeps its definition's digest and what it was built from; an image keeps its
newest check that found nothing changed ("checked at, unchanged since <serial>").

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 13:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("version") as batch_op:
        batch_op.add_column(
            sa.Column("spec_digest", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(sa.Column("inputs", sa.JSON(), nullable=True))
    op.create_table(
        "imagecheck",
        sa.Column("image", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("unchanged_since", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("checked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["image"], ["image.name"]),
        sa.PrimaryKeyConstraint("image"),
    )


def downgrade() -> None:
    op.drop_table("imagecheck")
    with op.batch_alter_table("version") as batch_op:
        batch_op.drop_column("inputs")
        batch_op.drop_column("spec_digest")
