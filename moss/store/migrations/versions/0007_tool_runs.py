"""The calls Moss's own tools ran for an answer (name, arguments, result), kept with it.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("tool_runs", sa.JSON(), nullable=True))


def downgrade() -> None:
    # Not batch mode (see 0006): on SQLite a batch copy of `messages` cascades into feedback.
    op.drop_column("messages", "tool_runs")
