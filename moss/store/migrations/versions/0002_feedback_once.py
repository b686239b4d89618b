"""Feedback: at most one judgment of each kind per person and message; index by update time.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.create_unique_constraint("uq_feedback_once", ["message_id", "user_id", "kind"])
        batch.create_index("ix_feedback_updated_at", ["updated_at"])


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_index("ix_feedback_updated_at")
        batch.drop_constraint("uq_feedback_once", type_="unique")
