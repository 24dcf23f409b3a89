"""attestations

Each version's signed in-toto statements: its build provenance and its test results; and
the daemon (`lxd 5.0.2`) each check result came from, which the test statement names.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 20:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "attestation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("statement", sa.JSON(), nullable=False),
        sa.Column("envelope", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["version.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("attestation") as batch_op:
        batch_op.create_index(batch_op.f("ix_attestation_version_id"), ["version_id"], unique=False)
    with op.batch_alter_table("assessment") as batch_op:
        batch_op.add_column(sa.Column("server", sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("assessment") as batch_op:
        batch_op.drop_column("server")
    with op.batch_alter_table("attestation") as batch_op:
        batch_op.drop_index(batch_op.f("ix_attestation_version_id"))
    op.drop_table("attestation")
