"""The store: conversations, messages, feedback, users and keys, model versions and training
records, memories, in SQLite or PostgreSQL, migrated by Alembic.

May import the basics only (moss.paths, moss.lang); knows nothing of engines, learning or HTTP."""

from moss.store.database import LOCAL_USER, Answer, Store, StoreError

__all__ = ["LOCAL_USER", "Answer", "Store", "StoreError"]
