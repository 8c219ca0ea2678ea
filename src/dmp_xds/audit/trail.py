"""Recording audit events.

A write transaction (ITI-41/42/57/62) records its event with :func:`record` on its own
connection, so the event commits or rolls back with the change. Everything else (reads,
failures, refusals) is recorded by :class:`Auditor` in a transaction of its own, before the
answer leaves: if the trail cannot be written, the caller gets a fault, not unaudited data.

The database trail is the source of truth. An optional exporter (``audit/export.py``, IHE
ATNA) gets each event once it is committed; it may lose events (collector down, queue full),
the trail never does. Emergency accesses (break-glass, centre 15) carry a flag that
PostgreSQL computes from the access mode (migration 0005) and the motive the VIHF gave.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from lxml import etree
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Computed,
    Connection,
    DateTime,
    Engine,
    MetaData,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.dialects.postgresql import ARRAY

from ..metadata import vocabulary as v
from ..registry.database import Precompiled
from ..security.principal import Principal

_metadata = MetaData()
audit_event = Table(
    "audit_event",
    _metadata,
    Column("event_id", BigInteger, primary_key=True),
    Column("occurred_at", DateTime(timezone=True)),
    Column("request_id", Uuid, nullable=False),
    Column("transaction", Text, nullable=False),
    Column("action", Text),
    Column("outcome", Text, nullable=False),
    Column("error_codes", ARRAY(Text), nullable=False),
    Column("patient_id", Text),
    Column("actor_id", Text),
    Column("actor_name", Text),
    Column("profession", Text),
    Column("specialty", Text),
    Column("structure_id", Text),
    Column("authentication_mode", Text),
    Column("access_mode", Text),
    Column("software", Text),
    Column("homologation", Text),
    Column("objects", ARRAY(Text), nullable=False),
    Column("remote_addr", Text),
    Column("detail", Text),
    Column("access_motive", Text),
    Column(
        "emergency",
        Boolean,
        Computed("coalesce(access_mode IN ('bris_de_glace', 'centre_15'), false)", persisted=True),
    ),
)

TRANSACTIONS = {
    v.ACTION_PNR: "ITI-41",
    v.ACTION_REGISTER: "ITI-42",
    v.ACTION_STORED_QUERY: "ITI-18",
    v.ACTION_RETRIEVE: "ITI-43",
    v.ACTION_UPDATE: "ITI-57",
    v.ACTION_DELETE: "ITI-62",
    # The DMP's own LPS services (patients/vocabulary.py names the actions).
    "urn:hl7-org:v3:PRPA_IN201307UV02": "DMP-TD0.2/TD1.3a",
    "urn:hl7-org:v3:PRPA_IN201308UV02": "DMP-TD0.2/TD1.3a",
    "urn:hl7-org:v3:PRPA_IN201311UV02": "DMP-TD1.1",
    "urn:hl7-org:v3:PRPA_IN201314UV02": "DMP-TD1.2/TD1.3b/TD1.4",
    "urn:si-dmp-habilitations:HabilitationsEndPoint:setAuthorization": "DMP-TD0.3",
    "urn:hl7-org:v3:setAuthorization": "DMP-TD0.3",
    "urn:si-dmp-habilitations:HabilitationsEndPoint:listAuthorizationByPatient": "DMP-TD1.6",
    "urn:hl7-org:v3:listAuthorizationByPatient": "DMP-TD1.6",
    "urn:si-dmp-patients:PatientSpecificEndPoint:patientList": "DMP-TD0.4",
    "urn:hl7-org:v3:PRPA_IN201305UV02": "DMP-TD0.5",
    "urn:ihe:iti:pdqv3:2007:PDQSupplier_Service:findCandidatesQuery": "DMP-TD0.5",
    # Trace queries (audit/service.py) and an operator's export of a trail (``dmp-xds trail``).
    "urn:dmp-xds:traces:1:listTraces": "DMP-TRACES",
    "urn:dmp-xds:cli:trail": "TRAIL-EXPORT",
}


@dataclass
class AuditEvent:
    """What one call did. ``outcome``: success, partial, failure (XDS errors), refused
    (security), fault (malformed request or internal error)."""

    request_id: str
    action: str | None
    outcome: str
    principal: Principal | None = None
    error_codes: Sequence[str] = ()
    objects: Sequence[str] = ()
    remote_addr: str | None = None
    detail: str | None = None
    patient_id: str | None = field(default=None)
    # Set by :func:`record` from the inserted row (the exporter dates its message with it).
    event_id: int | None = field(default=None, compare=False)
    occurred_at: dt.datetime | None = field(default=None, compare=False)

    def row(self) -> dict[str, object]:
        p = self.principal
        return {
            "request_id": uuid.UUID(self.request_id),
            "transaction": TRANSACTIONS.get(self.action or "", "unknown"),
            "action": self.action,
            "outcome": self.outcome,
            "error_codes": list(dict.fromkeys(self.error_codes)),
            "patient_id": self.patient_id or (p.patient.canonical if p else None),
            "actor_id": p.name_id if p else None,
            "actor_name": p.subject_name if p else None,
            "profession": f"{p.profession.code}^^{p.profession.system}" if p else None,
            "specialty": (
                f"{p.specialty.code}^^{p.specialty.system}" if p and p.specialty else None
            ),
            "structure_id": p.structure_id if p else None,
            "authentication_mode": p.authentication_mode.value if p else None,
            "access_mode": p.access_mode.value if p else None,
            "software": f"{p.software.name} {p.software.version}" if p else None,
            "homologation": p.software.homologation if p else None,
            "objects": list(self.objects),
            "remote_addr": self.remote_addr,
            "detail": self.detail,
            "access_motive": p.access_motive if p else None,
        }


# Built once: every call records an event. The columns are those of any event's row.
_INSERT = Precompiled(
    audit_event.insert().returning(audit_event.c.event_id, audit_event.c.occurred_at),
    columns=list(AuditEvent(str(uuid.UUID(int=0)), None, "success").row()),
)


def record(conn: Connection, event: AuditEvent) -> None:
    """Write ``event`` in ``conn``'s transaction (commits or rolls back with it)."""
    inserted = _INSERT.execute(conn, event.row()).one()
    event.event_id, event.occurred_at = inserted.event_id, inserted.occurred_at


class Exporter(Protocol):
    """Where committed events go besides the trail (audit/export.py). ``submit`` must return
    at once and never raise: it runs on the request's path."""

    def submit(self, event: AuditEvent, payload: etree._Element | None = None) -> None: ...


class Auditor:
    """Records events that have no transaction of their own to join, and hands committed
    events to the exporter, if one is configured."""

    def __init__(self, engine: Engine, exporter: Exporter | None = None) -> None:
        self.engine = engine
        self.exporter = exporter

    def record(self, event: AuditEvent, payload: etree._Element | None = None) -> None:
        with self.engine.begin() as conn:
            record(conn, event)
        self.export(event, payload)

    def export(self, event: AuditEvent, payload: etree._Element | None = None) -> None:
        """After the event's transaction committed: ``payload`` (the request's SOAP body) lets
        the exporter name what the call was about (submission set, query), by id only."""
        if self.exporter is not None:
            self.exporter.submit(event, payload)
