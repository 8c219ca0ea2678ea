"""A per-patient lock that keeps ITI-62 removals and submissions of the same record apart.

Why: the registry has no foreign keys between its rows (they are laid out to be distributed by
patient, DESIGN.md), so referential integrity is the transactions' job. A submission checks that
the objects its associations point at exist (registry/register.py), then inserts; a removal
checks that nothing still points at the objects it deletes (registry/remove.py), then deletes.
Interleaved without a lock, a submission could link to a document that a concurrent removal
deletes, and both would commit: an association to nothing.

So every write of a patient's record takes a transaction-scoped PostgreSQL advisory lock named
after the patient's key: submissions (ITI-41, ITI-42, ITI-57) a *shared* one, so that they never
wait for each other, and a removal an *exclusive* one, so that it waits for the submissions in
flight and holds new ones off until it commits. Each side takes it before its checks read
anything, and READ COMMITTED gives every later statement a snapshot taken after the lock, so
each side sees the other's committed result. The locks go with the transaction, and a removal
(rare, operator-driven) is the only one that ever waits.

The two-integer form is used under a class id of our own (like :mod:`..repository.content_lock`,
with another class), so these locks cannot collide with other advisory locks. Patient keys are
bigints: two keys equal modulo 2**32 only make one removal wait for the other's patient.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, CursorResult, TextClause, func, select, text

from .database import Precompiled

LOCK_CLASS = 0x7864_7370
"""Class id of patient-record locks (first key of the two-integer advisory lock form)."""


def _object_id(patient_key: int) -> int:
    """The second lock key: the patient key folded into a signed int4."""
    value = patient_key & 0xFFFF_FFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def hold_for_write(
    conn: Connection,
    patient_key: int,
    then: TextClause | None = None,
    params: Mapping[str, Any] | None = None,
) -> CursorResult:
    """A submission's shared hold on the record, until ``conn``'s transaction ends.

    ``then``: the submission's first read of the record, sent with the hold in one round trip
    (PostgreSQL runs the two in order, and READ COMMITTED gives the read a snapshot taken
    after the hold); its result is returned."""
    statement = _HOLD_SHARED
    if then is not None:
        if then.text not in _THEN:
            _THEN[then.text] = Precompiled(text(f"{_HOLD_SQL}; {then.text}"))
        statement = _THEN[then.text]
    hold = {"lock_class": LOCK_CLASS, "lock_key": _object_id(patient_key)}
    return statement.execute(conn, {**(params or {}), **hold})


# Built once: every submission takes it.
_HOLD_SQL = "SELECT pg_advisory_xact_lock_shared(:lock_class, :lock_key)"
_HOLD_SHARED = Precompiled(text(_HOLD_SQL))
_THEN: dict[str, Precompiled] = {}


def hold_for_removal(conn: Connection, patient_key: int) -> None:
    """A removal's exclusive hold on the record: waits for submissions in flight."""
    conn.execute(select(func.pg_advisory_xact_lock(LOCK_CLASS, _object_id(patient_key))))
