"""Training records from teachers, judges and self-instruct, beside people's feedback.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("lang", sa.String(length=10), nullable=False),
        sa.Column("prompt", sa.JSON(), nullable=False),
        sa.Column("chosen", sa.Text(), nullable=False),
        sa.Column("rejected", sa.Text(), nullable=True),
        sa.Column("origin", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("teacher", sa.String(length=200), nullable=False),
        sa.Column("version_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_training_records_source", "training_records", ["source"])
    op.create_index("ix_training_records_origin", "training_records", ["origin"])


def downgrade() -> None:
    op.drop_index("ix_training_records_origin", "training_records")
    op.drop_index("ix_training_records_source", "training_records")
    op.drop_table("training_records")
