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

from dataclasses import dataclass
from enum import StrEnum

from ..metadata import vocabulary as v
from .habilitations import Habilitations
from .rights import Column, Condition, RightsMatrix, load_matrix

# Confidentiality codes of the DMP (TRE_A07 / J58): they restrict a document's audience only
# in their own code system (a MASQUE_PS of another scheme masks nothing, facts.py).
DMP_CONFIDENTIALITY_SYSTEM = "1.2.250.1.213.1.1.4.13"
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
    PATIENT = "patient"  # the patient, through the host's patient portal
    REPRESENTANT_LEGAL = "representant_legal"  # a legal representative, through the portal


# Who acts for the patient: needs no authorisation on their own record, is never blocked, and
# "own documents" are the documents the patient wrote.
PATIENT_KINDS = frozenset({Kind.PATIENT, Kind.REPRESENTANT_LEGAL})


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
    # national identifier (RPPS/ADELI...), or the structure's in indirect mode; the patient's
    # identifier for the patient, the portal's id of a legal representative
    person_id: str
    structure_id: str
    profession: str = ""  # TRE_G15 code (the habilitation matrix reads it)


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
    # The DMP's restriction codes bare (MASQUE_PS, INVISIBLE_PATIENT...), any other code as
    # code^^scheme (N^^2.16.840.1.113883.5.25): facts.confidentiality_of
    confidentiality: frozenset[str]
    author_ids: frozenset[str]  # person ids of the authors
    author_structures: frozenset[str]
    authored_by_patient: bool = False
    type_code: str = ""  # typeCode as code^^scheme (the habilitation matrix reads it)


class Refusal(StrEnum):
    """Why a call is refused, as far as the caller's answer says it (the error code)."""

    NO_RECORD = "no_record"  # the patient has no DMP record
    CLOSED = "closed"  # the record is closed
    DENIED = "denied"  # the rights say no
    NOT_FOUND = "not_found"  # a document the caller cannot find: answered as an unknown one


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    refusal: Refusal = Refusal.DENIED

    def __bool__(self) -> bool:
        return self.allowed


ALLOW = Decision(True, "allowed")


def deny(reason: str, refusal: Refusal = Refusal.DENIED) -> Decision:
    return Decision(False, reason, refusal)


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
        (Kind.PATIENT, Mode.NORMAL): Column.PATIENT,
        (Kind.REPRESENTANT_LEGAL, Mode.NORMAL): Column.PATIENT,
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


def _blocked(actor: Actor, record: Record) -> bool:
    """The patient blocked this professional or structure (never the patient's own side)."""
    return record.authorisation is Authorisation.BLOCKED and actor.kind not in PATIENT_KINDS


def _record_gate(actor: Actor, record: Record) -> Decision | None:
    if not record.exists:
        return deny("the patient has no record", Refusal.NO_RECORD)
    if record.closed:
        return deny("the record is closed", Refusal.CLOSED)
    if _blocked(actor, record):
        return deny("the patient has blocked this professional")
    return None


def _access_gate(actor: Actor, record: Record) -> Decision | None:
    """:func:`_record_gate`, then the patient's opposition to the actor's emergency mode
    (OPPOSITION_BRIS_DE_GLACE, OPPOSITION_ACCES_URGENCE): it closes the record to that mode,
    for reading, for finding references and for changing documents alike (feeding needs no
    access to the record, so only the record's gate applies to it)."""
    gate = _record_gate(actor, record)
    if gate is not None:
        return gate
    if actor.mode is Mode.BRIS_DE_GLACE and record.opposes_break_glass:
        return deny("the patient opposed break-glass access")
    if actor.mode is Mode.CENTRE_15 and record.opposes_emergency_access:
        return deny("the patient opposed emergency (centre 15) access")
    return None


def consult_record(actor: Actor, record: Record, matrix: RightsMatrix | None = None) -> Decision:
    """Searching and reading the record (TD3.1/TD3.2): authorisation, or the médecin traitant,
    or break-glass / regulation access that the patient has not opposed; the patient's side
    reads their own record without any."""
    gate = _access_gate(actor, record)
    if gate is not None:
        return gate
    if (
        actor.mode is Mode.NORMAL
        and actor.kind is not Kind.MEDECIN_TRAITANT
        and actor.kind not in PATIENT_KINDS
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


def _own(actor: Actor, doc: Document) -> Decision:
    """Whether the actor answers for ``doc``: its author, or for an institution certificate or
    a CPE card its structure (notes 8 and 9: the documents it may correct and delete)."""
    kind = (
        Condition.STRUCTURE_DOCUMENTS
        if actor.kind in (Kind.ETABLISSEMENT, Kind.CPE)
        else Condition.OWN_DOCUMENTS
    )
    return _condition_holds(kind, actor, doc)


def finds(
    actor: Actor,
    record: Record,
    doc: Document,
    matrix: RightsMatrix | None = None,
    habilitations: Habilitations | None = None,
) -> Decision:
    """Whether the actor could find ``doc`` at all: a search shows it (it may consult the
    record and see the document), or it answers for it (:func:`_own`: an author knows its
    documents, an institution or a CPE finds its structure's by reference, note 5).

    A change naming a document the actor cannot find is refused with ``NOT_FOUND``, which the
    registry answers exactly as for an unknown document: naming a document must reveal
    nothing that a search would not.
    """
    if _own(actor, doc):
        return ALLOW
    seen = consult_record(actor, record, matrix)
    if seen:
        seen = see_document(actor, record, doc, matrix, habilitations)
    if seen:
        return ALLOW
    return deny(f"this caller cannot find the document ({seen.reason})", Refusal.NOT_FOUND)


def contribute(actor: Actor, doc: Document) -> Decision:
    """A document the patient's side adds (TD2.1) is patient-contributed: its one author is
    the patient, identified in an INS domain (:func:`.facts.is_patient`). A portal cannot make
    a professional the author of what the patient sends, since authorship decides who may
    correct, mask or delete it. Professionals state their own authors: nothing to check."""
    if actor.kind not in PATIENT_KINDS or (doc.authored_by_patient and len(doc.author_ids) == 1):
        return ALLOW
    return deny("a document the patient adds has the patient, and only the patient, as author")


def _condition_holds(condition: Condition | None, actor: Actor, doc: Document) -> Decision:
    if condition is Condition.OWN_DOCUMENTS and not (
        doc.authored_by_patient
        if actor.kind in PATIENT_KINDS
        else actor.person_id in doc.author_ids
    ):
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
    actor: Actor,
    record: Record,
    doc: Document,
    matrix: RightsMatrix | None = None,
    habilitations: Habilitations | None = None,
) -> Decision:
    """Whether one document may appear in the actor's answers (queries filter it out, retrieve
    answers as if it did not exist). Assumes :func:`consult_record` allowed the record."""
    m = matrix or load_matrix()
    col = column(actor)
    if col is None:
        return deny(f"{actor.kind} cannot act in {actor.mode} mode")
    if doc.status == v.DELETED:
        return deny("deleted documents leave every view")
    if (
        habilitations is not None
        and actor.kind not in PATIENT_KINDS  # the arrêté's matrix is about professionals
        and not habilitations.may_read(actor.profession, doc.type_code)
    ):
        return deny(f"profession {actor.profession} may not read {doc.type_code} documents")
    if actor.kind is Kind.REPRESENTANT_LEGAL and INVISIBLE_REPRESENTANTS_LEGAUX in (
        doc.confidentiality
    ):
        return deny("the document is hidden from the patient's legal representatives")
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
REVISE = "revise"  # a metadata update that is no TD3.3 operation (policy/updates.py)
_STARRED = {"archive", "unarchive", "delete"}  # "*": a patient's document: the MT's


def change_record(actor: Actor, record: Record) -> Decision:
    """The record's gates of any change (ITI-57), which the registry decides before it looks
    up the documents a request names: a refusal here says nothing about them. In an
    emergency mode the patient opposed, no document of the record is changed either."""
    gate = _access_gate(actor, record)
    return gate if gate is not None else ALLOW


def change_document(
    actor: Actor,
    record: Record,
    doc: Document,
    operation: str,
    matrix: RightsMatrix | None = None,
    habilitations: Habilitations | None = None,
) -> Decision:
    """Masking, visibility, archiving and deletion of one document (TD3.3), or ``revise``:
    another metadata correction, which the matrix does not list; it is left to whoever
    submitted the document (its author, or the author's structure for an institution or a
    CPE) provided it may still feed the record. Either only on a document the actor can
    find (:func:`finds`)."""
    gate = change_record(actor, record)
    if not gate:
        return gate
    found = finds(actor, record, doc, matrix, habilitations)
    if not found:
        return found
    if operation == REVISE:
        fed = feed_record(actor, record, matrix)
        if not fed:
            return fed
        return _own(actor, doc)
    if operation not in OPERATIONS:
        return deny(f"unknown operation {operation!r}")
    col = column(actor)
    if col is None:
        return deny(f"{actor.kind} cannot act in {actor.mode} mode")
    starred = operation in _STARRED and doc.authored_by_patient
    if starred and actor.kind is not Kind.MEDECIN_TRAITANT and actor.kind not in PATIENT_KINDS:
        return deny(
            "only the médecin traitant (or the patient) may do this to the patient's document"
        )
    right = (matrix or load_matrix()).right(OPERATIONS[operation], col)
    if not right.allowed:
        return deny(f"{OPERATIONS[operation]} is not allowed to {col.value}")
    if starred and right.condition is Condition.OWN_DOCUMENTS:
        # "*": the patient's documents are the médecin traitant's to archive and delete, so
        # the footnote "own documents only" (the MT's deletion cell) cannot apply to them:
        # no professional is the author of a document the patient wrote.
        return ALLOW
    return _condition_holds(right.condition, actor, doc)


class Search(StrEnum):
    """What a registry search (TD3.1) may return to an actor."""

    METADATA = "metadata"  # documents' metadata (LeafClass) and references
    REFERENCES = "references"  # references only (ObjectRef), to documents it could delete


def search_record(
    actor: Actor, record: Record, matrix: RightsMatrix | None = None
) -> tuple[Decision, Search]:
    """TD3.1: actors with the metadata right search like :func:`consult_record`; the others
    (CPE, institution certificate: note 5) may only look up references, "in view of deleting
    them", so they need no authorisation but see only what they may delete."""
    m = matrix or load_matrix()
    col = column(actor)
    if col is not None and m.right("TD3.1_metadonnees", col).allowed:
        return consult_record(actor, record, m), Search.METADATA
    gate = _access_gate(actor, record)
    if gate is not None:
        return gate, Search.REFERENCES
    return may(actor, "TD3.1_reference", m), Search.REFERENCES


def find_document(
    actor: Actor,
    record: Record,
    doc: Document,
    search: Search,
    matrix: RightsMatrix | None = None,
    habilitations: Habilitations | None = None,
) -> Decision:
    """Whether a search of kind ``search`` shows ``doc`` to the actor."""
    if search is Search.METADATA:
        return see_document(actor, record, doc, matrix, habilitations)
    if doc.status == v.DELETED:
        return deny("deleted documents leave every view")
    return change_document(actor, record, doc, "delete", matrix)


# --- the record's own services (GestionDossierPatientPartage, Habilitations, PatientsSpecific,
# PDQSupplier): who may call what, from the matrix's TD0.x / TD1.x rows and their footnotes.
class RecordTransaction(StrEnum):
    """A call on a patient's record; the value is the matrix row where the matrix has one."""

    EXISTENCE = "TD0.2"  # existence test and the caller's authorisation status
    AUTHORISE = "TD0.3_autoriser"  # "se déclarer autorisé"
    DESIGNATE_MT = "TD0.3_designer_mt"  # AJOUT with role MEDECIN_TRAITANT (ours: not a row)
    REVOKE = "TD0.3_supprimer_autorisation"  # "supprimer son autorisation"
    REVOKE_MT = "TD0.3_supprimer_mt"  # "se supprimer MT"
    BLOCK = "TD0.3_bloquer"  # our extension: what the Web PS offers the médecin traitant
    UNBLOCK = "TD0.3_debloquer"
    CREATE = "TD1.1"
    REACTIVATE = "TD1.2"
    CONSULT = "TD1.3a"
    MODIFY = "TD1.3b"
    CLOSE = "TD1.4"
    LIST_AUTHORISATIONS = "TD1.6"


# Not in the 2024 matrix (creation and the record's life moved to Mon espace santé): allowed in
# normal access mode only, never as an emergency side effect of break-glass or régulation.
_OUTSIDE_MATRIX = {
    RecordTransaction.CREATE,
    RecordTransaction.REACTIVATE,
    RecordTransaction.MODIFY,
    RecordTransaction.CLOSE,
}
# Note 10: TD1.3b / TD1.4 / TD1.5 only for records not attached to Mon espace santé.
_NOT_WITH_MES = {RecordTransaction.MODIFY, RecordTransaction.CLOSE}


def manage_record(
    actor: Actor,
    record: Record,
    transaction: RecordTransaction,
    matrix: RightsMatrix | None = None,
    *,
    attached_to_mes: bool = False,
) -> Decision:
    """May ``actor`` make this call on the record's administration (TD0.2, TD0.3, TD1.x)?

    Only who may call what: whether the record exists or is open is the record's own state,
    answered by the record layer with its own codes (DMPNotFound, DMPClosed). A professional
    the patient blocked is refused everything except TD0.2, which exists to tell them so.
    """
    if transaction in _OUTSIDE_MATRIX:
        if column(actor) is None:
            return deny(f"{actor.kind} cannot act in {actor.mode} mode")
        if actor.kind in PATIENT_KINDS:
            return deny(f"{transaction.value} is a professional's call, not the patient's")
        if actor.mode is not Mode.NORMAL:
            return deny(f"{transaction.value} is only possible in normal access mode")
        if transaction in _NOT_WITH_MES and attached_to_mes:
            return deny(f"{transaction.value} is not possible on a record attached to MES")
    elif transaction in (RecordTransaction.BLOCK, RecordTransaction.UNBLOCK):
        # The patient asks for it: themself (or their representative) through the portal, or
        # the médecin traitant at their request, as the national Web PS offers.
        blocker = actor.kind is Kind.MEDECIN_TRAITANT or actor.kind in PATIENT_KINDS
        if not blocker or actor.mode is not Mode.NORMAL:
            return deny(
                "only the patient or the médecin traitant, in normal mode, blocks or unblocks"
            )
    elif transaction is RecordTransaction.DESIGNATE_MT:
        decided = may(actor, RecordTransaction.AUTHORISE.value, matrix)
        if not decided:
            return decided
        if actor.kind not in (Kind.MEDECIN, Kind.MEDECIN_TRAITANT):
            return deny("only a médecin can be the médecin traitant")
    else:
        decided = may(actor, transaction.value, matrix)
        if not decided:
            return decided
    if transaction is not RecordTransaction.EXISTENCE and _blocked(actor, record):
        return deny("the patient has blocked this professional")
    return ALLOW


def find_patients(actor: Actor, matrix: RightsMatrix | None = None) -> Decision:
    """TD0.5, a patient search by identity traits: régulation (centre 15) only, where the
    caller may not know the patient's INS."""
    decided = may(actor, "TD0.5", matrix)
    if not decided and actor.mode is not Mode.CENTRE_15:
        return deny("a patient search without INS is only possible in régulation (centre_15)")
    return decided


def list_patients(
    actor: Actor,
    *,
    owner: str | None,
    owner_in_structure: bool,
    since_given: bool,
    matrix: RightsMatrix | None = None,
) -> Decision:
    """TD0.4, the records a professional is authorised on.

    ``owner`` is whose list is asked (``psOwnerId``; None: the caller's own). Note 2: a CPE
    may list those of a professional of its own structure (``owner_in_structure``). Note 3:
    an institution certificate only lists new authorisations, so it must give a start date.
    """
    decided = may(actor, "TD0.4", matrix)
    if not decided:
        return decided
    if owner is not None and owner != actor.person_id:
        if actor.kind is not Kind.CPE:
            return deny("a professional lists only their own patients")
        if not owner_in_structure:
            return deny("a CPE lists only professionals of its own structure")
    if actor.kind is Kind.ETABLISSEMENT and not since_given:
        return deny("an institution certificate lists only new authorisations: startDate")
    return ALLOW


def new_authorisations_only(actor: Actor) -> bool:
    """Note 3: whatever the date type, an institution certificate's TD0.4 list is limited
    to the authorisations given since its start date."""
    return actor.kind is Kind.ETABLISSEMENT


# --- traces: who reads a patient's audit trail ---------------------------------------------------
class TraceScope(StrEnum):
    """How much of a patient's trail a caller reads."""

    NONE = "none"  # refused
    OWN = "own"  # the caller's own actions on the record
    RECORD = "record"  # every event of the record


def read_traces(actor: Actor, record: Record) -> tuple[Decision, TraceScope]:
    """The national DMP's rule for its traces (Web PS): "the médecin traitant sees all
    traces, other professionals only their own", served here to software (audit/service.py);
    and the patient's: the patient (or a legal representative) reads the whole trail of
    their own record, open or closed, as Mon espace santé shows it.

    Refused: an institution certificate (plain indirect authentication names no person whose
    "own" actions these would be), a professional the patient blocked, and every emergency
    mode (reading the trail is not care; break-glass and régulation stay narrow). The whole
    trail goes to the record's médecin traitant while the record is open. Anyone else reads
    their own actions, with or without an authorisation or even a record: what one did is
    one's own to see, and an authorisation may have been removed since.
    """
    if actor.kind is Kind.ETABLISSEMENT:
        return deny("an institution certificate reads no traces"), TraceScope.NONE
    if actor.mode is not Mode.NORMAL:
        return deny(f"traces are not read in {actor.mode} mode"), TraceScope.NONE
    if actor.kind in PATIENT_KINDS:
        return Decision(True, "the patient reads their record's trail"), TraceScope.RECORD
    if _blocked(actor, record):
        return deny("the patient has blocked this professional"), TraceScope.NONE
    if actor.kind is Kind.MEDECIN_TRAITANT and record.exists and not record.closed:
        return Decision(True, "the médecin traitant reads the whole trail"), TraceScope.RECORD
    return Decision(True, "a professional reads their own actions"), TraceScope.OWN
