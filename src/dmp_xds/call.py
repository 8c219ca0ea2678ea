"""What every transaction handler receives: the parsed SOAP request and who is calling.

The security layer (VIHF verification) fills ``principal`` before any handler runs; handlers
never look at WS-Security headers themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from sqlalchemy import Connection

from .audit.trail import AuditEvent, record
from .metadata.datatypes import PatientId
from .registry.database import autocommit, begin_transaction
from .security.principal import Principal
from .soap.envelope import SoapRequest
from .soap.mtom import OutPart


@dataclass
class Call:
    request: SoapRequest
    request_id: str
    # The verified VIHF (security.principal.Principal); the application always sets it, None
    # only where a test builds a Call by hand (policy checks then refuse).
    principal: Principal | None = None
    log: dict[str, Any] = field(default_factory=dict)  # facts for the request's log line
    action: str | None = None
    remote_addr: str | None = None
    # Identifiers of what the call touched (entryUUIDs, document uniqueIds) for the trail.
    audit_objects: list[str] = field(default_factory=list)
    # The event a write recorded in its own transaction (exported once the handler returns);
    # None: the application records the call's event itself.
    audit_event: AuditEvent | None = None
    # The request's one database connection (app.py checks it out after authentication's
    # transport checks and returns it before the answer is sent).
    db: Connection | None = None

    def reading(self) -> AbstractContextManager[Connection]:
        """The connection for a read (``with call.reading() as conn``; the block does not
        close it), in autocommit mode: each statement, and the read's audit event that the
        application records next, commits on its own, with no BEGIN or COMMIT round trip
        (registry/database.py ``autocommit`` says why a read loses nothing)."""
        return nullcontext(autocommit(self._db()))

    def _db(self) -> Connection:
        if self.db is None:
            raise RuntimeError("this call has no database connection")
        return self.db

    def writing(self) -> AbstractContextManager[Connection]:
        """A transaction for a write, committed when the block ends (with the event that
        :meth:`audit_success` records in it), rolled back if it raises. What a write reads
        (its checks, row locks) it reads inside the block: reads made before it on
        :meth:`reading` have committed on their own."""
        return _transaction(self._db())

    def audit_success(self, conn: Connection, objects: list[str]) -> None:
        """Record a successful write in the write's own transaction (DESIGN: the trail of a
        change commits with the change)."""
        self.audit_objects = objects
        self.audit_event = AuditEvent(
            self.request_id,
            self.action,
            "success",
            self.principal,
            objects=objects,
            remote_addr=self.remote_addr,
        )
        record(conn, self.audit_event)

    @property
    def payload(self) -> etree._Element:
        return self.request.payload

    @property
    def authorised_patient(self) -> PatientId | None:
        """The patient the VIHF names: the only record this call may touch."""
        return self.principal.patient if self.principal is not None else None


@dataclass
class Reply:
    """A handler's answer: the SOAP body payload and, for ITI-43, the documents to attach."""

    payload: etree._Element
    attachments: list[OutPart] = field(default_factory=list)
    force_mtom: bool = False
    # Answers that are not RegistryResponses (the DMP's HL7v3 and DMP-specific services) say
    # their WS-Addressing action, outcome (an XDS ResponseStatusType) and error codes here.
    action: str | None = None
    status: str | None = None
    error_codes: list[str] = field(default_factory=list)
    # Stored XML fragments the envelope splices in at the payload's splice point (LeafClass
    # answers: registry objects are kept as text, parsing them only to re-serialise is waste).
    spliced: list[str] = field(default_factory=list)


@contextmanager
def _transaction(db: Connection) -> Iterator[Connection]:
    begin_transaction(db)
    try:
        yield db
    except BaseException:
        db.rollback()
        raise
    db.commit()
