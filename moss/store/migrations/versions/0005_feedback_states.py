"""Feedback states and their history; trusted users.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("trusted", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("state", sa.String(length=20), nullable=False, server_default="pending"))
        batch.add_column(sa.Column("reason", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("learned_in", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("unlearned_in", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("checks", sa.JSON(), nullable=False, server_default="{}"))
        batch.create_index("ix_feedback_state", ["state"])
    op.create_table(
        "feedback_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("feedback_id", sa.Integer(), sa.ForeignKey("feedback.id", ondelete="CASCADE"), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_feedback_events_feedback_id", "feedback_events", ["feedback_id"])


def downgrade() -> None:
    op.drop_index("ix_feedback_events_feedback_id", "feedback_events")
    op.drop_table("feedback_events")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_index("ix_feedback_state")
        for column in ("checks", "attempts", "unlearned_in", "learned_in", "reason", "state"):
            batch.drop_column(column)
    with op.batch_alter_table("users") as batch:
        batch.drop_column("trusted")
