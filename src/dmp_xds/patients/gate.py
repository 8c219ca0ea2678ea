"""The DMP rules applied to one XDS call: the facts of the caller's record, loaded once, in
front of the pure decisions of :mod:`dmp_xds.policy.access`.

The registry and repository services load a :class:`RecordGate` on the connection of their
transaction and ask it: may this caller feed the record (ITI-41/42), search it (ITI-18) and
see this document (ITI-18/43), change this document (ITI-57)? A refusal becomes an
:class:`XdsError` with the code DMP-compatible software expects: ``XDSUnknownPatientId`` when
the patient has no record, ``DMPClosed`` for a closed one, ``DMPAccessDeniedByRightsService``
otherwise. Hidden documents are never refused by name: searches leave them out, retrieve
answers as for an unknown document, and so does a change naming one the caller cannot find.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from sqlalchemy import Connection

from ..call import Call
from ..errors import ErrorCode, XdsError, XdsFailure
from ..metadata import vocabulary as v
from ..metadata.ebrim import rim, slot_values
from ..metadata.model import DocumentEntry
from ..policy import access
from ..policy.access import Actor, Decision, Document, Record, Refusal, Search
from ..policy.facts import actor_of, document_of, person_id
from ..policy.habilitations import Habilitations, load_habilitations
from ..policy.rights import RightsMatrix, load_matrix
from ..registry.queries import document_facts
from ..security.principal import Principal
from .authorisations import AccessFacts, access_facts
from .records import CLOSED


@dataclass(frozen=True)
class Rules:
    """The operator's data files: the functional rights and the habilitation matrix."""

    matrix: RightsMatrix
    habilitations: Habilitations

    @classmethod
    def load(cls, matrix_path: str | None = None, habilitations_path: str | None = None) -> Rules:
        """Read (and so validate) both files; called once at start-up."""
        return cls(load_matrix(matrix_path), load_habilitations(habilitations_path))


_CODES = {
    Refusal.NO_RECORD: ErrorCode.UNKNOWN_PATIENT_ID,
    Refusal.CLOSED: ErrorCode.DMP_CLOSED,
    Refusal.DENIED: ErrorCode.DMP_ACCESS_DENIED,
    # A document the caller cannot find: each transaction answers it as it answers an unknown
    # one, in that transaction's shape (ITI-57: registry/update.py); this is the fallback.
    Refusal.NOT_FOUND: ErrorCode.DOCUMENT_UNIQUE_ID,
}


def refusal(decision: Decision, location: str, patient_id: str = "") -> XdsError:
    """The XDS error of a refused decision (``codeContext`` names the patient for
    XDSUnknownPatientId, as ITI-41/42 require)."""
    message = decision.reason
    if decision.refusal is Refusal.NO_RECORD and patient_id:
        message = f"{patient_id}: {decision.reason}"
    return XdsError(_CODES[decision.refusal], message, location)


def record_of(facts: AccessFacts | None) -> Record:
    """What access policy needs of the record and the caller's standing on it (a block wins
    over an authorisation); no facts: no record."""
    if facts is None or facts.record_status is None:
        return Record(exists=False)
    if facts.blocked:
        authorisation = access.Authorisation.BLOCKED
    elif facts.authorised:
        authorisation = access.Authorisation.AUTHORISED
    else:
        authorisation = access.Authorisation.NONE
    return Record(
        closed=facts.record_status == CLOSED,
        authorisation=authorisation,
        opposes_break_glass=facts.opposition_bris_de_glace,
        opposes_emergency_access=facts.opposition_acces_urgence,
    )


def caller_of(principal: Principal, facts: AccessFacts | None = None) -> Actor:
    """The matrix actor of a VIHF: the médecin traitant when the record's facts say so."""
    mt = principal.name_id if facts is not None and facts.medecin_traitant else None
    return actor_of(principal, medecin_traitant=mt)


def require(decision: Decision, location: str, call: Call) -> None:
    """Raise the refusal of ``decision`` (nothing when it allows), its reason noted on the
    call's log line."""
    if not decision:
        call.log["refused"] = decision.reason
        patient = call.principal.patient.canonical if call.principal else ""
        raise XdsFailure(refusal(decision, location, patient))


def author_institutions(ebrim: str) -> list[str]:
    """The XONs of a DocumentEntry's authors (only the structure rules need them, so they are
    read from the stored fragment when asked rather than kept in a column)."""
    element = etree.fromstring(ebrim)
    found: list[str] = []
    for c in element.iterchildren(rim("Classification")):
        if c.get("classificationScheme") == v.DE_AUTHOR:
            found += slot_values(c).get("authorInstitution", [])
    return found


@dataclass
class RecordGate:
    """Who calls and what the record says about them, for the length of one call."""

    actor: Actor
    record: Record
    rules: Rules
    patient_key: int | None  # of the VIHF's patient, when it has a record
    _shapes: dict[tuple[Any, ...], bool] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, conn: Connection, principal: Principal, rules: Rules) -> RecordGate:
        facts = access_facts(
            conn, principal.patient.canonical, principal.name_id, principal.structure_id
        )
        return cls(caller_of(principal, facts), record_of(facts), rules, facts.patient_key)

    # --- decisions on the record ----------------------------------------------------------------
    def feed(self) -> Decision:
        return access.feed_record(self.actor, self.record, self.rules.matrix)

    def contribute(self, doc: DocumentEntry) -> Decision:
        """May this caller add this new DocumentEntry (its authors, for the patient's side)?"""
        facts = document_of(
            v.APPROVED,
            (c.key for c in doc.confidentiality_codes),
            (a.person for a in doc.authors if a.person),
        )
        return access.contribute(self.actor, facts)

    def search(self) -> tuple[Decision, Search]:
        return access.search_record(self.actor, self.record, self.rules.matrix)

    def consult(self) -> Decision:
        return access.consult_record(self.actor, self.record, self.rules.matrix)

    # --- decisions on documents -----------------------------------------------------------------
    def document(self, row: Any, *, structures: bool = False) -> Document:
        """Policy facts of a document row (:data:`DOCUMENT_FACT_COLUMNS`)."""
        need_structures = structures or self.actor.kind in (
            access.Kind.ETABLISSEMENT,
            access.Kind.CPE,
        )
        return document_of(
            row.status,
            row.confidentiality_codes,
            row.author_persons,
            author_institutions(row.ebrim) if need_structures else (),
            type_code=row.type_code or "",
        )

    def shows(self, row: Any, search: Search = Search.METADATA) -> bool:
        """Whether a document (row) appears in this caller's answers.

        A patient's documents share few shapes (status, codes, authored by the caller or not,
        type), so decisions are remembered per shape for the length of the call; only the
        institution's and CPE's reference searches, which read each document's structures,
        are decided one by one."""
        key = None
        if search is Search.METADATA:
            own = any(person_id(p) == self.actor.person_id for p in row.author_persons)
            key = (row.status, tuple(row.confidentiality_codes), row.type_code, own)
            if key in self._shapes:
                return self._shapes[key]
        shown = bool(
            access.find_document(
                self.actor,
                self.record,
                self.document(row),
                search,
                self.rules.matrix,
                self.rules.habilitations,
            )
        )
        if key is not None:
            self._shapes[key] = shown
        return shown

    def change_record(self) -> Decision:
        return access.change_record(self.actor, self.record)

    def change(self, row: Any, operation: str) -> Decision:
        return access.change_document(
            self.actor,
            self.record,
            self.document(row, structures=True),
            operation,
            self.rules.matrix,
            self.rules.habilitations,
        )

    def unknown(self, row: Any) -> bool:
        """Whether a change naming this document (row) must be answered as if it did not
        exist: this caller cannot find it (:func:`access.finds`)."""
        return not access.finds(
            self.actor,
            self.record,
            self.document(row, structures=True),
            self.rules.matrix,
            self.rules.habilitations,
        )

    def hidden(
        self,
        conn: Connection,
        entry_uuids: Iterable[uuid.UUID],
        search: Search = Search.METADATA,
        *,
        known: Sequence[tuple[uuid.UUID, Any]] = (),
    ) -> set[uuid.UUID]:
        """The DocumentEntries among ``entry_uuids`` this caller may not see. ``known`` gives
        rows already read (entryUUID, row); the others are read here, in one query."""
        rows = dict(known)
        missing = set(entry_uuids) - rows.keys()
        if missing and self.patient_key is not None:
            rows.update(document_facts(conn, self.patient_key, missing))
        return {u for u, row in rows.items() if not self.shows(row, search)}
