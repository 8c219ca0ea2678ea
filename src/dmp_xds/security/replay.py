"""The replay cache: a VIHF assertion is accepted once.

Kept in PostgreSQL (table ``vihf_replay``, migration 0002) because every gunicorn worker, and
every server behind a load balancer, must see the same set: an in-process cache would let the
same assertion through once per worker. One statement decides atomically: the insert wins, or
it meets an unexpired row with the same id and the assertion is a replay. A row whose
assertion has expired no longer protects anything (the assertion itself is refused as
expired), so it may be overwritten, and is purged now and then by whichever worker is due.
"""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import Column, DateTime, Engine, MetaData, Table, Text, delete, text
from sqlalchemy.dialects.postgresql import insert

_metadata = MetaData()
vihf_replay = Table(
    "vihf_replay",
    _metadata,
    Column("assertion_id", Text, primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)


class ReplayCache:
    def __init__(self, engine: Engine, *, purge_every_s: float = 60.0) -> None:
        self.engine = engine
        self.purge_every_s = purge_every_s
        self._last_purge = time.monotonic()

    def first_use(self, assertion_id: str, expires_at: dt.datetime, now: dt.datetime) -> bool:
        """Record ``assertion_id`` until ``expires_at``; False when it was seen before."""
        statement = insert(vihf_replay).values(assertion_id=assertion_id, expires_at=expires_at)
        statement = statement.on_conflict_do_update(
            index_elements=[vihf_replay.c.assertion_id],
            set_={"expires_at": statement.excluded.expires_at},
            where=vihf_replay.c.expires_at <= now,
        ).returning(vihf_replay.c.assertion_id)
        with self.engine.begin() as conn:
            # Asynchronous commit: the row is visible to every worker at once, and waiting for
            # the WAL flush (a disk sync per request, measured 2-4 ms here) would only protect
            # the last few hundred milliseconds of ids against a PostgreSQL crash. Registry
            # writes keep synchronous commits.
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            fresh = conn.execute(statement).first() is not None
            if time.monotonic() - self._last_purge >= self.purge_every_s:
                self._last_purge = time.monotonic()
                conn.execute(delete(vihf_replay).where(vihf_replay.c.expires_at <= now))
        return fresh
