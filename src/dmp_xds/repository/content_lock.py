"""Per-document locks that keep the garbage collector away from bytes being registered.

ITI-41 stores a document's bytes, then commits the entry that references them (DESIGN.md,
"Atomicity"). Between the two, the bytes are unreferenced. The grace period of ``dmp-xds gc``
covers a new blob, but not this case: a submission whose bytes are *already* stored as an old
orphan (a retry after a failure, the same file sent again) deduplicates against that orphan and
writes nothing; a collector that saw the orphan unreferenced and deletes it before the commit
would leave the new entry pointing at nothing.

So both sides take a transaction-scoped PostgreSQL advisory lock named after the content key:
ITI-41 a *shared* one, from before its store write until its commit (submissions never wait for
each other); the collector an *exclusive* one, without waiting, then checks for references in the
same transaction and deletes only while holding it. Either the submission committed first (the
collector sees the reference), or the collector deleted first (the submission's write, which
waits for the lock, finds nothing and stores the bytes again). Locks go with the transaction, so a
crashed process never leaves one behind.

The two-integer form of the advisory lock functions is used, under a class id of our own, so
that these locks cannot collide with bigint-keyed advisory locks taken elsewhere. Two keys that
share their first 32 bits only make one of them wait a little.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection, func, select, text

from ..registry.database import Precompiled
from .store import validate_key

LOCK_CLASS = 0x7864_7362
"""Class id of document-content locks (first key of the two-integer advisory lock form)."""


def _object_id(sha256: str) -> int:
    """The second lock key: the first 32 bits of the SHA-256, as a signed int4."""
    value = int(validate_key(sha256)[:8], 16)
    return value - (1 << 32) if value >= 1 << 31 else value


def hold_for_write(conn: Connection, sha256s: Collection[str]) -> None:
    """Before storing bytes that ``conn``'s transaction will reference: wait out a collector.
    One round trip for a whole submission's documents (shared locks never wait on each
    other, so their order does not matter)."""
    keys = sorted({_object_id(k) for k in sha256s})
    if keys:
        _HOLD_SHARED.execute(conn, {"class": LOCK_CLASS, "keys": keys})


_HOLD_SHARED = Precompiled(
    text(
        "SELECT count(pg_advisory_xact_lock_shared(:class, k)) FROM unnest(CAST(:keys AS int[])) k"
    )
)


def try_hold_for_removal(conn: Connection, sha256: str) -> bool:
    """Exclusive hold for the collector; False (no waiting) while a submission holds the key."""
    return bool(
        conn.execute(
            select(func.pg_try_advisory_xact_lock(LOCK_CLASS, _object_id(sha256)))
        ).scalar_one()
    )
