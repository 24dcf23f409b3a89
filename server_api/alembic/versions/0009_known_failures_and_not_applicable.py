"""known failures and not-applicable results

An assessment may be `not_applicable` (the check does not apply to the image or host);
each keeps how many failed results it had; operators record known failures of a check,
which the gate does not require until their date.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 17:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("running", "passed", "failed")
NEW = (*OLD, "not_applicable")


def _states(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name="assessmentstate")


def _set_states(values: tuple[str, ...], before: tuple[str, ...]) -> None:
    """Postgres: the enum type gets exactly `values`; SQLite: the column's width."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TYPE assessmentstate RENAME TO assessmentstate_old")
        _states(values).create(op.get_bind())
        op.execute(
            "ALTER TABLE assessment ALTER COLUMN state TYPE assessmentstate "
            "USING state::text::assessmentstate"
        )
        op.execute("DROP TYPE assessmentstate_old")
        return
    with op.batch_alter_table("assessment") as batch_op:
        batch_op.alter_column(
            "state", existing_type=_states(before), type_=_states(values), existing_nullable=False
        )


def upgrade() -> None:
    _set_states(NEW, OLD)
    with op.batch_alter_table("assessment") as batch_op:
        batch_op.add_column(sa.Column("failures", sa.Integer(), server_default="0", nullable=False))
    op.execute("UPDATE assessment SET failures = 1 WHERE state = 'failed'")
    op.create_table(
        "knownfailure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("check", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("arch", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("link", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["image"], ["image.name"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("image", "check", "arch"),
    )
    with op.batch_alter_table("knownfailure") as batch_op:
        batch_op.create_index(batch_op.f("ix_knownfailure_image"), ["image"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("knownfailure") as batch_op:
        batch_op.drop_index(batch_op.f("ix_knownfailure_image"))
    op.drop_table("knownfailure")
    with op.batch_alter_table("assessment") as batch_op:
        batch_op.drop_column("failures")
    # Before this revision a check that did not apply was recorded as passed, its evidence
    # saying "not applicable": so it becomes again.
    op.execute("UPDATE assessment SET state = 'passed' WHERE state = 'not_applicable'")
    _set_states(OLD, NEW)
