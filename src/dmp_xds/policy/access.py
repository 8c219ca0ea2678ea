"""DMP access decisions as pure functions: facts in, a decision with its reason out.

The facts come from the verified VIHF (who acts, how, in which access mode), the patient's
record (open or closed, the actor's authorisation, the patient's oppositions, who the médecin
traitant is) and each document's metadata (status, confidentiality codes, authors). The rights
themselves come from the functional rights matrix (:mod:`.rights`); what this module adds is
what the matrix leaves to the system: the record gates (closed record, blocked professional,
authorisation, break-glass opposition) and the per-document conditions of the footnotes.

Nothing here does I/O, so every rule is tested as a table (tests/unit/test_policy_access.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from ..metadata import vocabulary as v
from .rights import Column, Condition, RightsMatrix, load_matrix

# Confidentiality codes of the DMP (TRE_A07 / J58, code system 1.2.250.1.213.1.1.4.13).
MASQUE_PS = "MASQUE_PS"
INVISIBLE_PATIENT = "INVISIBLE_PATIENT"
INVISIBLE_REPRESENTANTS_LEGAUX = "INVISIBLE_REPRESENTANTS_LEGAUX"
MEDECIN = "10"  # TRE_G15 profession code of a physician


class Kind(StrEnum):
    """The actor kinds the matrix distinguishes."""

    PS = "ps"  # health professional who is not a physician (card CPS/CPF)
    MEDECIN = "medecin"
    MEDECIN_TRAVAIL = "medecin_travail"
    MEDECIN_TRAITANT = "medecin_traitant"  # the patient's designated médecin traitant DMP
    CPE = "cpe"  # establishment staff card, not a health professional
    ETABLISSEMENT = "etablissement"  # indirect authentication: the institution's certificate


class Mode(StrEnum):
    NORMAL = "normal"
    BRIS_DE_GLACE = "bris_de_glace"
    CENTRE_15 = "centre_15"


class Authorisation(StrEnum):
    NONE = "none"
    AUTHORISED = "authorised"
    BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class Actor:
    kind: Kind
    mode: Mode
    person_id: str  # national identifier (RPPS/ADELI...) or the structure's, in indirect mode
    structure_id: str


@dataclass(frozen=True, slots=True)
class Record:
    exists: bool = True
    closed: bool = False
    authorisation: Authorisation = Authorisation.NONE  # of the acting professional / structure
    opposes_break_glass: bool = False
    opposes_emergency_access: bool = False


@dataclass(frozen=True, slots=True)
class Document:
    status: str
    confidentiality: frozenset[str]  # the codes alone (N, R, MASQUE_PS, INVISIBLE_PATIENT...)
    author_ids: frozenset[str]  # person ids of the authors
    author_structures: frozenset[str]
    authored_by_patient: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


ALLOW = Decision(True, "allowed")


def deny(reason: str) -> Decision:
    return Decision(False, reason)


def column(actor: Actor) -> Column | None:
    """The matrix column of an actor in its access mode (None: a combination the matrix does
    not provide for, such as an institution certificate in break-glass mode)."""
    table = {
        (Kind.PS, Mode.NORMAL): Column.PS_NORMAL,
        (Kind.PS, Mode.CENTRE_15): Column.PS_REGULATION,
        (Kind.PS, Mode.BRIS_DE_GLACE): Column.PS_BRIS_DE_GLACE,
        (Kind.MEDECIN, Mode.NORMAL): Column.MEDECIN_NORMAL,
        (Kind.MEDECIN, Mode.CENTRE_15): Column.MEDECIN_REGULATION,
        (Kind.MEDECIN, Mode.BRIS_DE_GLACE): Column.MEDECIN_BRIS_DE_GLACE,
        (Kind.MEDECIN_TRAITANT, Mode.NORMAL): Column.MT_NORMAL,
        (Kind.MEDECIN_TRAITANT, Mode.CENTRE_15): Column.MEDECIN_REGULATION,
        (Kind.MEDECIN_TRAITANT, Mode.BRIS_DE_GLACE): Column.MT_BRIS_DE_GLACE,
        (Kind.CPE, Mode.NORMAL): Column.CPE,
        (Kind.ETABLISSEMENT, Mode.NORMAL): Column.ES_NORMAL,
        (Kind.ETABLISSEMENT, Mode.CENTRE_15): Column.ES_REGULATION,
    }
    if actor.kind is Kind.MEDECIN_TRAVAIL:
        return Column.MEDECIN_TRAVAIL  # the matrix gives it one column, "sans objet" mode
    return table.get((actor.kind, actor.mode))


def may(actor: Actor, action: str, matrix: RightsMatrix | None = None) -> Decision:
    """The matrix alone: may this actor, in this mode, perform ``action`` at all?"""
    col = column(actor)
    if col is None:
        return deny(f"{actor.kind} cannot act in {actor.mode} mode")
    right = (matrix or load_matrix()).right(action, col)
    if not right.allowed:
        return deny(f"{action} is not allowed to {col.value}")
    return ALLOW


def _record_gate(actor: Actor, record: Record) -> Decision | None:
    if not record.exists:
        return deny("the patient has no record")
    if record.closed:
        return deny("the record is closed")
    if record.authorisation is Authorisation.BLOCKED:
        return deny("the patient has blocked this professional")
    return None


def consult_record(actor: Actor, record: Record, matrix: RightsMatrix | None = None) -> Decision:
    """Searching and reading the record (TD3.1/TD3.2): authorisation, or the médecin traitant,
    or break-glass / regulation access that the patient has not opposed."""
    gate = _record_gate(actor, record)
    if gate is not None:
        return gate
    if actor.mode is Mode.BRIS_DE_GLACE and record.opposes_break_glass:
        return deny("the patient opposed break-glass access")
    if actor.mode is Mode.CENTRE_15 and record.opposes_emergency_access:
        return deny("the patient opposed emergency (centre 15) access")
    if (
        actor.mode is Mode.NORMAL
        and actor.kind is not Kind.MEDECIN_TRAITANT
        and record.authorisation is not Authorisation.AUTHORISED
    ):
        return deny("the professional is not authorised on this record")
    return may(actor, "TD3.1_metadonnees", matrix)


def feed_record(actor: Actor, record: Record, matrix: RightsMatrix | None = None) -> Decision:
    """Adding documents (TD2.1): no authorisation needed, but not to a closed record nor by a
    blocked professional."""
    gate = _record_gate(actor, record)
    if gate is not None:
        return gate
    action = "TD2.2" if actor.kind is Kind.CPE else "TD2.1"
    return may(actor, action, matrix)


def _condition_holds(condition: Condition | None, actor: Actor, doc: Document) -> Decision:
    if condition is Condition.OWN_DOCUMENTS and actor.person_id not in doc.author_ids:
        return deny("only the document's author may do this")
    if (
        condition is Condition.STRUCTURE_DOCUMENTS
        and actor.structure_id not in doc.author_structures
    ):
        return deny("only the author's structure may do this")
    if condition is Condition.PATIENT_CONSENT:
        return deny("masked documents need the patient's consent in this access mode")
    return ALLOW


def see_document(
    actor: Actor, record: Record, doc: Document, matrix: RightsMatrix | None = None
) -> Decision:
    """Whether one document may appear in the actor's answers (queries filter it out, retrieve
    answers as if it did not exist). Assumes :func:`consult_record` allowed the record."""
    m = matrix or load_matrix()
    col = column(actor)
    if col is None:
        return deny(f"{actor.kind} cannot act in {actor.mode} mode")
    if doc.status == v.DELETED:
        return deny("deleted documents leave every view")
    rows = ["TD3.2_masques" if MASQUE_PS in doc.confidentiality else "TD3.2_non_masques"]
    if INVISIBLE_PATIENT in doc.confidentiality:
        rows.append("TD3.2_invisibles_patient")
    if doc.status == v.ARCHIVED:
        rows.append("TD3.2_archives")
    if doc.status == v.DEPRECATED:
        rows.append("TD3.2_obsoletes")
    for row in rows:
        right = m.right(row, col)
        if not right.allowed:
            return deny(f"{row} is not allowed to {col.value}")
        held = _condition_holds(right.condition, actor, doc)
        if not held:
            return held
    return ALLOW


# ITI-57 operations of the DMP (TD3.3) -> the matrix rows that govern them.
OPERATIONS = {
    "mask": "TD3.3a_masquer",
    "unmask": "TD3.3a_demasquer",
    "make_visible_to_patient": "TD3.3b_visible_patient",
    "archive": "TD3.3d_archiver",
    "unarchive": "TD3.3d_desarchiver",
    "delete": "TD3.3c_supprimer",
}
_STARRED = {"archive", "unarchive", "delete"}  # "*": a patient's document: MT only


def change_document(
    actor: Actor,
    record: Record,
    doc: Document,
    operation: str,
    matrix: RightsMatrix | None = None,
) -> Decision:
    """Masking, visibility, archiving and deletion of one document (TD3.3)."""
    gate = _record_gate(actor, record)
    if gate is not None:
        return gate
    if operation not in OPERATIONS:
        return deny(f"unknown operation {operation!r}")
    col = column(actor)
    if col is None:
        return deny(f"{actor.kind} cannot act in {actor.mode} mode")
    if (
        operation in _STARRED
        and doc.authored_by_patient
        and actor.kind is not Kind.MEDECIN_TRAITANT
    ):
        return deny("only the médecin traitant may do this to the patient's own document")
    right = (matrix or load_matrix()).right(OPERATIONS[operation], col)
    if not right.allowed:
        return deny(f"{OPERATIONS[operation]} is not allowed to {col.value}")
    return _condition_holds(right.condition, actor, doc)


def visible_documents(
    actor: Actor, record: Record, docs: Iterable[Document], matrix: RightsMatrix | None = None
) -> list[bool]:
    """:func:`see_document` for many documents (the query filter)."""
    return [bool(see_document(actor, record, d, matrix)) for d in docs]
