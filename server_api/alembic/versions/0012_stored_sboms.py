"""stored bills of materials

Each version arch with a package manifest gets its SPDX and CycloneDX documents made at
publish and stored as files (server_api.sbom), listed in the feeds and the build statement.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 19:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("sbom_spdx", "sbom_cdx")


def upgrade() -> None:
    with op.batch_alter_table("versionarch") as batch_op:
        for name in COLUMNS:
            batch_op.add_column(
                sa.Column(f"{name}_sha256", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
            )
            batch_op.add_column(sa.Column(f"{name}_size", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("versionarch") as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(f"{name}_size")
            batch_op.drop_column(f"{name}_sha256")
