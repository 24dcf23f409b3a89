"""access, forced events, garbage collection

Token expiry, private feed credentials, forced transitions on events, the files of a
version deleted by garbage collection, and one fingerprint per image in the catalog.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 17:33:54.119129
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sqlmodel.sql.sqltypes.UTCDateTime()


def upgrade() -> None:
    op.create_table(
        "feedcredential",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("flavour", sa.String(), nullable=False),
        sa.Column("secret_sha256", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=True),
        sa.Column("revoked_at", UTC_DATETIME, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_sha256"),
    )
    with op.batch_alter_table("event") as batch_op:
        batch_op.add_column(
            sa.Column("forced", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("token") as batch_op:
        batch_op.add_column(sa.Column("expires_at", UTC_DATETIME, nullable=True))
    with op.batch_alter_table("version") as batch_op:
        batch_op.add_column(sa.Column("files_deleted_at", UTC_DATETIME, nullable=True))
    with op.batch_alter_table("versionarch") as batch_op:
        batch_op.drop_index("ix_versionarch_fingerprint")
        batch_op.create_index("ix_versionarch_fingerprint", ["fingerprint"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("versionarch") as batch_op:
        batch_op.drop_index("ix_versionarch_fingerprint")
        batch_op.create_index("ix_versionarch_fingerprint", ["fingerprint"], unique=False)
    with op.batch_alter_table("version") as batch_op:
        batch_op.drop_column("files_deleted_at")
    with op.batch_alter_table("token") as batch_op:
        batch_op.drop_column("expires_at")
    with op.batch_alter_table("event") as batch_op:
        batch_op.drop_column("forced")
    op.drop_table("feedcredential")
