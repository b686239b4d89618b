"""Memories: what each correction teaches, retrieved at answer time, made for the corrections
already stored; the memories each answer's prompt held.

Revision ID: 0006
Revises: 0005
"""
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

from moss.lang import detect

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    memories = op.create_table(
        "memories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("feedback_id", sa.Integer(), sa.ForeignKey("feedback.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("lang", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("feedback_id"),
    )
    op.create_index("ix_memories_user_id", "memories", ["user_id"])
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("memory_ids", sa.JSON(), nullable=True))
    feedback, messages = sa.table("feedback", sa.column("id"), sa.column("user_id"), sa.column("kind"),
                                  sa.column("value", sa.JSON), sa.column("message_id")), \
        sa.table("messages", sa.column("id"), sa.column("parent_id"), sa.column("content"), sa.column("role"))
    answer, question = messages.alias("answer"), messages.alias("question")
    rows = op.get_bind().execute(
        sa.select(feedback.c.id, feedback.c.user_id, feedback.c.value, question.c.content)
        .join(answer, answer.c.id == feedback.c.message_id)
        .join(question, question.c.id == answer.c.parent_id)
        .where(feedback.c.kind == "correction", question.c.role == "user")).all()
    stamp = datetime.now(timezone.utc)
    op.bulk_insert(memories, [{"feedback_id": f, "user_id": u, "question": q, "answer": v["content"],
                               "lang": detect(q), "created_at": stamp} for f, u, v, q in rows])


def downgrade() -> None:
    # Not batch mode: on SQLite that copies `messages` into a new table and drops the old one,
    # and the drop deletes every row that references a message (feedback, ON DELETE CASCADE).
    op.drop_column("messages", "memory_ids")
    op.drop_index("ix_memories_user_id", "memories")
    op.drop_table("memories")
