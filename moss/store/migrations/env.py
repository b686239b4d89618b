"""Alembic environment: migrate the database whose connection or URL Moss passes in."""

from alembic import context
from sqlalchemy import create_engine

from moss.store.schema import Base

config = context.config
connection = config.attributes.get("connection")


def run(conn) -> None:
    context.configure(connection=conn, target_metadata=Base.metadata,
                      render_as_batch=conn.dialect.name == "sqlite")  # SQLite alters by copying tables
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    with create_engine(config.get_main_option("sqlalchemy.url")).connect() as conn:
        run(conn)
