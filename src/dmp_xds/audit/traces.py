"""Trace queries: a patient's trail, whole or one professional's part of it.

Two readers: the trace service (``audit/service.py``: a page at a time, newest first, as a
portal shows it) and the operator's ``dmp-xds trail`` export (everything, oldest first, to hand
to a patient who asks for it). Both read the same facts, by identifier only: the trail holds
no document content, and the client's network address and the refusal details stay out of
what a professional or a patient is shown.

Every query is scoped to one patient and uses the ``(patient_id, occurred_at)`` index; one
professional's part adds ``actor_id``, a filter on those rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from sqlalchemy import Connection, func, select

from .trail import audit_event

DEFAULT_PAGE = 50
MAX_PAGE = 200

_COLUMNS = (
    audit_event.c.event_id,
    audit_event.c.occurred_at,
    audit_event.c.transaction,
    audit_event.c.action,
    audit_event.c.outcome,
    audit_event.c.error_codes,
    audit_event.c.actor_id,
    audit_event.c.actor_name,
    audit_event.c.profession,
    audit_event.c.specialty,
    audit_event.c.structure_id,
    audit_event.c.authentication_mode,
    audit_event.c.access_mode,
    audit_event.c.emergency,
    audit_event.c.access_motive,
    audit_event.c.software,
    audit_event.c.objects,
)
FIELDS = tuple(c.name for c in _COLUMNS)


@dataclass(frozen=True)
class Trace:
    """One event as a trace reader sees it."""

    event_id: int
    occurred_at: dt.datetime
    transaction: str
    action: str | None
    outcome: str
    error_codes: tuple[str, ...]
    actor_id: str | None
    actor_name: str | None
    profession: str | None  # code^^codeSystem
    specialty: str | None
    structure_id: str | None
    authentication_mode: str | None
    access_mode: str | None
    emergency: bool
    access_motive: str | None
    software: str | None
    objects: tuple[str, ...]

    @classmethod
    def of(cls, row: Any) -> Trace:
        m = row._mapping
        values = {name: m[name] for name in FIELDS}
        values["error_codes"] = tuple(values["error_codes"] or ())
        values["objects"] = tuple(values["objects"] or ())
        values["emergency"] = bool(values["emergency"])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the date in UTC, ISO 8601)."""
        values = {name: getattr(self, name) for name in FIELDS}
        values["occurred_at"] = utc_text(self.occurred_at)
        values["error_codes"] = list(self.error_codes)
        values["objects"] = list(self.objects)
        return values


@dataclass(frozen=True)
class TracePage:
    traces: list[Trace]
    total: int  # events matching, all pages together
    offset: int

    @property
    def more(self) -> bool:
        return self.offset + len(self.traces) < self.total


def utc_text(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _where(
    patient_id: str, actor_id: str | None, since: dt.datetime | None, until: dt.datetime | None
) -> list[Any]:
    t = audit_event.c
    clauses = [t.patient_id == patient_id]
    if actor_id is not None:
        clauses.append(t.actor_id == actor_id)
    if since is not None:
        clauses.append(t.occurred_at >= since)
    if until is not None:
        clauses.append(t.occurred_at < until)
    return clauses


def trail_page(
    conn: Connection,
    patient_id: str,
    *,
    actor_id: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    offset: int = 0,
    limit: int = DEFAULT_PAGE,
) -> TracePage:
    """One page of ``patient_id``'s trail, newest first; only ``actor_id``'s own events when
    given. ``since`` is inclusive, ``until`` exclusive; ``limit`` is capped at MAX_PAGE."""
    where = _where(patient_id, actor_id, since, until)
    total = conn.execute(select(func.count()).select_from(audit_event).where(*where)).scalar_one()
    rows = conn.execute(
        select(*_COLUMNS)
        .where(*where)
        .order_by(audit_event.c.occurred_at.desc(), audit_event.c.event_id.desc())
        .offset(max(0, offset))
        .limit(max(1, min(limit, MAX_PAGE)))
    )
    return TracePage([Trace.of(r) for r in rows], total, max(0, offset))


def whole_trail(
    conn: Connection,
    patient_id: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Iterator[Trace]:
    """Every event of ``patient_id``'s trail, oldest first, streamed (a trail can be long)."""
    rows = conn.execution_options(stream_results=True, yield_per=500).execute(
        select(*_COLUMNS)
        .where(*_where(patient_id, None, since, until))
        .order_by(audit_event.c.occurred_at, audit_event.c.event_id)
    )
    for row in rows:
        yield Trace.of(row)


# --- the operator's export (dmp-xds trail) -------------------------------------------------------
def write_json(traces: Iterable[Trace], out: TextIO, header: dict[str, Any]) -> int:
    """``{...header, "events": [...]}``, written as the events stream in; returns the count."""
    out.write(json.dumps(header, ensure_ascii=False)[:-1] + ', "events": [')
    count = 0
    for trace in traces:
        out.write(("," if count else "") + "\n  " + json.dumps(trace.as_dict(), ensure_ascii=False))
        count += 1
    out.write("\n]}\n")
    return count


def write_csv(traces: Iterable[Trace], out: TextIO) -> int:
    """One row per event, the columns of :data:`FIELDS` (lists space-separated)."""
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for trace in traces:
        row = trace.as_dict()
        row["error_codes"] = " ".join(row["error_codes"])
        row["objects"] = " ".join(row["objects"])
        row["emergency"] = "true" if row["emergency"] else "false"
        writer.writerow(row)
        count += 1
    return count
