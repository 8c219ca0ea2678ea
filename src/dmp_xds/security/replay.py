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

from ..registry.database import Precompiled, autocommit

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

        The claim commits at once, in autocommit mode (one round trip), on ``conn`` (the
        request's connection, which is left in that mode) or on a connection of the engine's:
        an accepted assertion is spent whatever becomes of its request. It never joins the
        request's transaction: a write that fails (rolled back) or a request that crashes
        would leave the assertion usable again, and a VIHF is not bound to the body it came
        with.
        """
        with contextlib.ExitStack() as stack:
            if conn is None:
                conn = stack.enter_context(self.engine.connect())
            params = {"id": assertion_id, "expires": expires_at, "now": now}
            claimed = _CLAIM.execute(autocommit(conn), params).first()
        if time.monotonic() - self._last_purge >= self.purge_every_s:
            # In a short transaction of its own, on a connection of its own.
            self._last_purge = time.monotonic()
            with self.engine.begin() as purging:
                purging.execute(delete(vihf_replay).where(vihf_replay.c.expires_at <= now))
        return claimed is not None


# One round trip, compiled once. Asynchronous commit: the row is visible to every worker at
# once, and waiting for the WAL flush (a disk sync per request, measured 2-4 ms here) would
# only protect the last few hundred milliseconds of ids against a PostgreSQL crash. Registry
# writes and the audit trail keep synchronous commits. An expired row may be taken over.
_CLAIM = Precompiled(
    text(
        "SET LOCAL synchronous_commit = off;"
        " INSERT INTO vihf_replay (assertion_id, expires_at) VALUES (:id, :expires)"
        " ON CONFLICT (assertion_id) DO UPDATE SET expires_at = excluded.expires_at"
        " WHERE vihf_replay.expires_at <= :now RETURNING assertion_id"
    )
)
