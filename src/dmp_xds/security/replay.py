"""The replay cache: a VIHF assertion is accepted once.

Kept in PostgreSQL (table ``vihf_replay``, migration 0002) because every gunicorn worker, and
every server behind a load balancer, must see the same set: an in-process cache would let the
same assertion through once per worker. One statement decides atomically: the insert wins, or
it meets an unexpired row with the same id and the assertion is a replay. A row whose
assertion has expired no longer protects anything (the assertion itself is refused as
expired), so it may be overwritten, and is purged now and then by whichever worker is due.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time

from sqlalchemy import Column, Connection, DateTime, Engine, MetaData, Table, Text, delete, text

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

    def first_use(
        self,
        assertion_id: str,
        expires_at: dt.datetime,
        now: dt.datetime,
        conn: Connection | None = None,
    ) -> bool:
        """Record ``assertion_id`` until ``expires_at``; False when it was seen before.

        On ``conn`` (the request's connection) the claim joins the request's transaction and
        commits with it: with the read's audit event, or with the write. One transaction and
        one commit per request instead of two; a concurrent request with the same id waits on
        the row until then, and is refused once it commits. A request that fails before its
        commit (the database or a bug) leaves the id unclaimed, as nothing was done with it.
        Without ``conn``, the claim commits at once on a connection of the engine's.
        """
        with contextlib.ExitStack() as stack:
            if conn is None:
                conn = stack.enter_context(self.engine.begin())
            claimed = conn.execute(
                _CLAIM, {"id": assertion_id, "expires": expires_at, "now": now}
            ).first()
        if time.monotonic() - self._last_purge >= self.purge_every_s:
            # In a short transaction of its own: the rows it deletes stay locked only until
            # it commits, never for the length of a request (a batch takes seconds).
            self._last_purge = time.monotonic()
            with self.engine.begin() as purging:
                purging.execute(delete(vihf_replay).where(vihf_replay.c.expires_at <= now))
        return claimed is not None


# One round trip, compiled once. An expired row may be taken over.
_CLAIM = text(
    "INSERT INTO vihf_replay (assertion_id, expires_at) VALUES (:id, :expires)"
    " ON CONFLICT (assertion_id) DO UPDATE SET expires_at = excluded.expires_at"
    " WHERE vihf_replay.expires_at <= :now RETURNING assertion_id"
)
