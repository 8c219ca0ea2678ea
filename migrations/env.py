"""Alembic environment: migrations run against the URL the caller puts in the config
(``sqlalchemy.url``), or ``DMP_XDS_DATABASE_URL``. Migrations are written by hand."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or os.environ.get("DMP_XDS_DATABASE_URL")
if not url:
    raise RuntimeError("no database URL for migrations")

engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
