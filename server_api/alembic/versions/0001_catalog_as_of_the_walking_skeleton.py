"""catalog as of the walking skeleton

The schema `create_all` made before migrations existed; such catalogs are stamped
with this revision when the server first starts with migrations.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 17:32:50.385375
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blob",
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_table(
        "image",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("os", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("release", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("variant", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("release_title", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=True),
        sa.Column("requirements", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("scope", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("token_sha256", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    op.create_table(
        "version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("serial", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("created", "testing", "active", "inactive", name="versionstate"),
            nullable=False,
        ),
        sa.Column("required_checks", sa.JSON(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("state_changed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image"],
            ["image.name"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("image", "serial"),
    )
    with op.batch_alter_table("version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_version_image"), ["image"], unique=False)
        batch_op.create_index(batch_op.f("ix_version_state"), ["state"], unique=False)

    op.create_table(
        "assessment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("arch", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("check", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("instance_type", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("host", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column(
            "state", sa.Enum("running", "passed", "failed", name="assessmentstate"), nullable=False
        ),
        sa.Column("evidence", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["version.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("version_id", "arch", "check", "instance_type", "host"),
    )
    with op.batch_alter_table("assessment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_assessment_version_id"), ["version_id"], unique=False)

    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column(
            "from_state",
            sa.Enum("created", "testing", "active", "inactive", name="versionstate"),
            nullable=True,
        ),
        sa.Column(
            "to_state",
            sa.Enum("created", "testing", "active", "inactive", name="versionstate"),
            nullable=False,
        ),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["version.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_version_id"), ["version_id"], unique=False)

    op.create_table(
        "versionarch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("arch", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("metadata_sha256", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("metadata_size", sa.Integer(), nullable=False),
        sa.Column("rootfs_sha256", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("rootfs_size", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["version.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("version_id", "arch"),
    )
    with op.batch_alter_table("versionarch", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_versionarch_fingerprint"), ["fingerprint"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_versionarch_version_id"), ["version_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("versionarch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_versionarch_version_id"))
        batch_op.drop_index(batch_op.f("ix_versionarch_fingerprint"))

    op.drop_table("versionarch")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_version_id"))

    op.drop_table("event")
    with op.batch_alter_table("assessment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assessment_version_id"))

    op.drop_table("assessment")
    with op.batch_alter_table("version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_version_state"))
        batch_op.drop_index(batch_op.f("ix_version_image"))

    op.drop_table("version")
    op.drop_table("token")
    op.drop_table("image")
    op.drop_table("blob")
    for enum in ("versionstate", "assessmentstate"):  # Postgres keeps enum types otherwise
        sa.Enum(name=enum).drop(op.get_bind(), checkfirst=True)
