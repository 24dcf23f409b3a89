"""hooks, notices and deliveries

Webhook subscriptions, the notices outbox (written with the change it tells of) and one
delivery row per notice and hook.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 17:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Text = sqlmodel.sql.sqltypes.AutoString
When = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "hook",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", Text(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=True),
        sa.Column("format", sa.String(), nullable=False),
        sa.Column("secret", Text(), nullable=False),
        sa.Column("created_by", Text(), nullable=False),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("removed_at", When(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", Text(), nullable=False),
        sa.Column("kind", Text(), nullable=False),
        sa.Column("image", Text(), nullable=False),
        sa.Column("serial", Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("key", Text(), nullable=True),
        sa.Column("at", When(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_notice_kind", "notice", ["kind"])
    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hook_id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", Text(), nullable=False),
        sa.Column("dispatched_at", When(), nullable=True),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("updated_at", When(), nullable=False),
        sa.ForeignKeyConstraint(["hook_id"], ["hook.id"]),
        sa.ForeignKeyConstraint(["notice_id"], ["notice.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("hook_id", "notice_id", "state", "dispatched_at"):
        op.create_index(f"ix_delivery_{column}", "delivery", [column])


def downgrade() -> None:
    op.drop_table("delivery")
    op.drop_table("notice")
    op.drop_table("hook")
