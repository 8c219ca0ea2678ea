"""The DMP access rules, one table per rule (policy is pure: no server needed)."""

from __future__ import annotations

import pytest

from dmp_xds.metadata import vocabulary as v
from dmp_xds.policy.access import (
    INVISIBLE_PATIENT,
    INVISIBLE_REPRESENTANTS_LEGAUX,
    MASQUE_PS,
    Actor,
    Authorisation,
    Document,
    Kind,
    Mode,
    Record,
    RecordTransaction,
    Refusal,
    change_document,
    consult_record,
    contribute,
    feed_record,
    find_patients,
    finds,
    list_patients,
    manage_record,
    may,
    new_authorisations_only,
    see_document,
)
from dmp_xds.policy.habilitations import Habilitations
from dmp_xds.policy.rights import Column, Condition, RightsMatrix, load_matrix
from tests.fixtures.principals import principal

AUTHOR, OTHER = "810000000001", "810000000002"
CLINIC, ELSEWHERE = "1999000001", "1999000002"


def actor(
    kind: Kind = Kind.MEDECIN,
    mode: Mode = Mode.NORMAL,
    person: str = OTHER,
    structure: str = ELSEWHERE,
) -> Actor:
    return Actor(kind, mode, person, structure)


def doc(status: str = v.APPROVED, *codes: str, patient: bool = False) -> Document:
    return Document(
        status,
        frozenset({"N", *codes}),
        frozenset({AUTHOR}),
        frozenset({CLINIC}),
        authored_by_patient=patient,
    )


AUTHORISED = Record(authorisation=Authorisation.AUTHORISED)
NOT_AUTHORISED = Record()
BLOCKED = Record(authorisation=Authorisation.BLOCKED)
CLOSED = Record(closed=True, authorisation=Authorisation.AUTHORISED)
OPPOSED = Record(opposes_break_glass=True, opposes_emergency_access=True)


@pytest.mark.parametrize(
    ("who", "record", "allowed", "reason"),
    [
        (actor(), AUTHORISED, True, "allowed"),
        (actor(), NOT_AUTHORISED, False, "not authorised"),
        (actor(), BLOCKED, False, "blocked"),
        (actor(), CLOSED, False, "closed"),
        (actor(), Record(exists=False), False, "no record"),
        (actor(Kind.MEDECIN_TRAITANT), NOT_AUTHORISED, True, "allowed"),
        (actor(Kind.MEDECIN_TRAITANT), BLOCKED, False, "blocked"),
        (actor(mode=Mode.BRIS_DE_GLACE), NOT_AUTHORISED, True, "allowed"),
        (actor(mode=Mode.BRIS_DE_GLACE), OPPOSED, False, "opposed break-glass"),
        (actor(mode=Mode.CENTRE_15), NOT_AUTHORISED, True, "allowed"),
        (actor(mode=Mode.CENTRE_15), OPPOSED, False, "opposed emergency"),
        (actor(Kind.PS, Mode.BRIS_DE_GLACE), NOT_AUTHORISED, True, "allowed"),
        (actor(Kind.CPE), AUTHORISED, False, "TD3.1_metadonnees is not allowed to cpe"),
        (actor(Kind.ETABLISSEMENT), AUTHORISED, False, "not allowed to es_normal"),
        (actor(Kind.ETABLISSEMENT, Mode.BRIS_DE_GLACE), NOT_AUTHORISED, False, "cannot act"),
        (actor(Kind.MEDECIN_TRAVAIL), AUTHORISED, True, "allowed"),
    ],
)
def test_consult_record(who: Actor, record: Record, allowed: bool, reason: str) -> None:
    decision = consult_record(who, record)
    assert decision.allowed is allowed
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("who", "record", "allowed"),
    [
        (actor(), NOT_AUTHORISED, True),  # feeding needs no authorisation
        (actor(Kind.ETABLISSEMENT), NOT_AUTHORISED, True),  # the institution writes for its staff
        (actor(Kind.CPE), NOT_AUTHORISED, True),  # TD2.2, secretaries
        (actor(), CLOSED, False),
        (actor(), BLOCKED, False),
        (actor(Kind.PS, Mode.BRIS_DE_GLACE), NOT_AUTHORISED, True),
    ],
)
def test_feed_record(who: Actor, record: Record, allowed: bool) -> None:
    assert feed_record(who, record).allowed is allowed


@pytest.mark.parametrize(
    ("who", "document", "allowed", "reason"),
    [
        (actor(), doc(), True, "allowed"),
        (actor(), doc(v.APPROVED, MASQUE_PS), False, "author"),
        (actor(person=AUTHOR), doc(v.APPROVED, MASQUE_PS), True, "allowed"),
        (actor(Kind.MEDECIN_TRAITANT), doc(v.APPROVED, MASQUE_PS), True, "allowed"),
        (actor(mode=Mode.BRIS_DE_GLACE), doc(v.APPROVED, MASQUE_PS), False, "consent"),
        (
            actor(Kind.MEDECIN_TRAITANT, Mode.BRIS_DE_GLACE),
            doc(v.APPROVED, MASQUE_PS),
            False,
            "consent",
        ),
        (actor(), doc(v.APPROVED, INVISIBLE_PATIENT), True, "allowed"),
        (actor(), doc(v.ARCHIVED), True, "allowed"),
        (actor(), doc(v.DEPRECATED), True, "allowed"),
        (actor(), doc(v.DELETED), False, "deleted"),
        (actor(Kind.MEDECIN_TRAITANT), doc(v.DELETED), False, "deleted"),
        (actor(Kind.MEDECIN_TRAVAIL), doc(), False, "not allowed to medecin_travail"),
        (actor(Kind.ETABLISSEMENT), doc(), False, "not allowed to es_normal"),
    ],
)
def test_see_document(who: Actor, document: Document, allowed: bool, reason: str) -> None:
    decision = see_document(who, AUTHORISED, document)
    assert decision.allowed is allowed
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("who", "operation", "document", "allowed"),
    [
        (actor(), "mask", doc(), True),
        (actor(), "unmask", doc(v.APPROVED, MASQUE_PS), False),  # someone else's document
        (actor(person=AUTHOR), "unmask", doc(v.APPROVED, MASQUE_PS), True),
        (actor(Kind.MEDECIN_TRAITANT), "unmask", doc(v.APPROVED, MASQUE_PS), True),
        (actor(mode=Mode.BRIS_DE_GLACE), "mask", doc(), False),
        (actor(), "make_visible_to_patient", doc(v.APPROVED, INVISIBLE_PATIENT), True),
        (actor(), "archive", doc(), False),
        (actor(person=AUTHOR), "archive", doc(), True),
        (actor(mode=Mode.CENTRE_15), "archive", doc(), True),
        (actor(person=AUTHOR), "delete", doc(), True),
        (actor(), "delete", doc(), False),
        (actor(Kind.ETABLISSEMENT, structure=CLINIC), "delete", doc(), True),
        (actor(Kind.ETABLISSEMENT), "delete", doc(), False),
        (actor(person=AUTHOR), "delete", doc(patient=True), False),  # patient's own document
        # "*": the patient's documents are the MT's to archive and delete (the footnote
        # "own documents only" of its deletion cell does not apply: none is the MT's)
        (actor(Kind.MEDECIN_TRAITANT), "delete", doc(patient=True), True),
        (actor(Kind.MEDECIN_TRAITANT), "archive", doc(patient=True), True),
        (actor(Kind.MEDECIN_TRAITANT), "unarchive", doc(v.ARCHIVED, patient=True), True),
        (actor(Kind.MEDECIN_TRAITANT, person=AUTHOR), "delete", doc(patient=True), True),
        (actor(Kind.MEDECIN_TRAITANT, Mode.BRIS_DE_GLACE), "delete", doc(patient=True), True),
        # ... but not a professional's document, which stays its author's to delete
        (actor(Kind.MEDECIN_TRAITANT), "delete", doc(), False),
        (actor(Kind.PS, person=AUTHOR), "archive", doc(patient=True), False),
        (actor(), "rename", doc(), False),
    ],
)
def test_change_document(who: Actor, operation: str, document: Document, allowed: bool) -> None:
    assert change_document(who, AUTHORISED, document, operation).allowed is allowed


@pytest.mark.parametrize(
    ("who", "record", "document", "found"),
    [
        # what a search shows (consult the record, see the document)
        (actor(), AUTHORISED, doc(), True),
        (actor(), AUTHORISED, doc(v.APPROVED, MASQUE_PS), False),  # masked to others
        (actor(), NOT_AUTHORISED, doc(), False),  # may not consult the record
        (actor(), AUTHORISED, doc(v.DELETED), False),
        (actor(Kind.MEDECIN_TRAITANT), NOT_AUTHORISED, doc(v.APPROVED, MASQUE_PS), True),
        (actor(mode=Mode.BRIS_DE_GLACE), NOT_AUTHORISED, doc(), True),
        # ... or what the actor answers for: its own documents, whatever the record says
        (actor(person=AUTHOR), NOT_AUTHORISED, doc(v.APPROVED, MASQUE_PS), True),
        (actor(person=AUTHOR), AUTHORISED, doc(v.DELETED), True),
        # an institution or a CPE finds its structure's documents (by reference), no others
        (actor(Kind.ETABLISSEMENT, structure=CLINIC), NOT_AUTHORISED, doc(), True),
        (actor(Kind.CPE, structure=CLINIC), NOT_AUTHORISED, doc(), True),
        (actor(Kind.ETABLISSEMENT), AUTHORISED, doc(), False),
        (actor(Kind.CPE), AUTHORISED, doc(), False),
    ],
)
def test_finds(who: Actor, record: Record, document: Document, found: bool) -> None:
    decision = finds(who, record, document)
    assert decision.allowed is found
    if not found:
        assert decision.refusal is Refusal.NOT_FOUND


@pytest.mark.parametrize(
    ("who", "operation", "document"),
    [
        (actor(Kind.PS), "unmask", doc(v.APPROVED, MASQUE_PS)),
        (actor(), "make_visible_to_patient", doc(v.APPROVED, MASQUE_PS, INVISIBLE_PATIENT)),
        (actor(), "mask", doc(v.DELETED)),
        (actor(Kind.ETABLISSEMENT), "delete", doc()),
        (actor(), "revise", doc(v.APPROVED, MASQUE_PS)),
    ],
)
def test_changes_to_documents_the_actor_cannot_find(who: Actor, operation, document) -> None:
    """Not a rights refusal, which would say that the document exists: not found."""
    decision = change_document(who, AUTHORISED, document, operation)
    assert not decision and decision.refusal is Refusal.NOT_FOUND


@pytest.mark.parametrize(
    ("who", "record", "operation", "allowed", "reason"),
    [
        # the matrix lets these emergency modes archive (and delete their own documents)...
        (actor(mode=Mode.CENTRE_15), NOT_AUTHORISED, "archive", True, "allowed"),
        (actor(Kind.MEDECIN_TRAITANT, Mode.BRIS_DE_GLACE), NOT_AUTHORISED, "archive", True, ""),
        (actor(Kind.PS, Mode.BRIS_DE_GLACE, AUTHOR), NOT_AUTHORISED, "delete", True, ""),
        # ... unless the patient opposed that mode, own documents included
        (actor(mode=Mode.CENTRE_15), OPPOSED, "archive", False, "opposed emergency"),
        (
            actor(Kind.MEDECIN_TRAITANT, Mode.BRIS_DE_GLACE),
            OPPOSED,
            "archive",
            False,
            "opposed break-glass",
        ),
        (actor(Kind.PS, Mode.BRIS_DE_GLACE, AUTHOR), OPPOSED, "delete", False, "break-glass"),
        (actor(Kind.PS, Mode.BRIS_DE_GLACE, AUTHOR), OPPOSED, "revise", False, "break-glass"),
        (
            actor(Kind.ETABLISSEMENT, Mode.CENTRE_15, structure=CLINIC),
            OPPOSED,
            "delete",
            False,
            "opposed emergency",
        ),
        # an opposition to one mode leaves the other open
        (
            actor(mode=Mode.CENTRE_15),
            Record(opposes_break_glass=True),
            "archive",
            True,
            "allowed",
        ),
    ],
)
def test_oppositions_close_changes_too(who, record, operation, allowed, reason) -> None:
    decision = change_document(who, record, doc(), operation)
    assert decision.allowed is allowed
    assert reason in decision.reason


def test_change_on_closed_or_blocked_records() -> None:
    """The record's gates come first, and say nothing about the document."""
    for who in (actor(person=AUTHOR), actor()):
        closed = change_document(who, CLOSED, doc(), "archive")
        assert not closed and closed.refusal is Refusal.CLOSED
        blocked = change_document(who, BLOCKED, doc(), "archive")
        assert not blocked and blocked.refusal is Refusal.DENIED


def test_matrix_cells_and_conditions() -> None:
    m = load_matrix()
    assert m.right("TD3.2_masques", Column.PS_NORMAL).condition is Condition.OWN_DOCUMENTS
    assert m.right("TD3.2_masques", Column.MEDECIN_REGULATION).condition is (
        Condition.PATIENT_CONSENT
    )
    assert m.right("TD3.3c_supprimer", Column.CPE).condition is Condition.STRUCTURE_DOCUMENTS
    assert not m.right("TD0.5", Column.MEDECIN_NORMAL).allowed
    assert m.right("TD0.5", Column.MEDECIN_REGULATION).allowed
    assert not m.right("no such action", Column.MT_NORMAL).allowed  # fail closed
    assert may(actor(Kind.MEDECIN, Mode.CENTRE_15), "TD0.5")


def test_operator_matrix_replaces_the_shipped_one(tmp_path) -> None:
    header = "action," + ",".join(c.value for c in Column)
    row = "TD3.1_metadonnees," + ",".join("non" for _ in Column)
    path = tmp_path / "matrix.csv"
    path.write_text(f"# mine\n{header}\n{row}\n")
    matrix = load_matrix(str(path))
    assert not consult_record(actor(Kind.MEDECIN_TRAITANT), AUTHORISED, matrix)


@pytest.mark.parametrize(
    "text",
    [
        "action,ps_normal\nTD0.2,oui\n",  # missing columns
        "action,"
        + ",".join(c.value for c in Column)
        + "\nTD0.2,"
        + ",".join("peut-être" for _ in Column),
    ],
)
def test_malformed_matrix_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="rights matrix"):
        RightsMatrix.parse(text)


def test_document_facts_from_stored_metadata() -> None:
    from dmp_xds.policy.facts import document_of

    facts = document_of(
        v.APPROVED,
        ["N^^2.16.840.1.113883.5.25", "MASQUE_PS^^1.2.250.1.213.1.1.4.13"],
        [
            "810000000001^MARTIN^CLAIRE^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS",
            "2070585756270^DUPONT^JEANNE^^^^^^&1.2.250.1.213.1.4.10&ISO^D^^^NH",
        ],
        ["CHU TEST^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1999000001"],
    )
    assert facts.confidentiality == {"N^^2.16.840.1.113883.5.25", MASQUE_PS}
    assert facts.author_ids == {"810000000001", "2070585756270"}
    assert facts.author_structures == {"1999000001"}
    assert facts.authored_by_patient


@pytest.mark.parametrize(
    ("codes", "masked", "invisible"),
    [
        (["N^^2.16.840.1.113883.5.25", "MASQUE_PS^^1.2.250.1.213.1.1.4.13"], True, False),
        (["INVISIBLE_PATIENT^^1.2.250.1.213.1.1.4.13"], False, True),
        # the same letters in another code system restrict nothing
        (["N^^2.16.840.1.113883.5.25", "MASQUE_PS^^1.2.3.4"], False, False),
        (["INVISIBLE_PATIENT^^2.16.840.1.113883.5.25"], False, False),
        (["MASQUE_PS"], False, False),  # no code system at all
    ],
)
def test_dmp_codes_count_in_their_own_code_system(codes, masked: bool, invisible: bool) -> None:
    from dmp_xds.policy.facts import document_of
    from dmp_xds.policy.updates import metadata_operations

    facts = document_of(v.APPROVED, codes, [f"{AUTHOR}^MARTIN^CLAIRE"])
    assert (MASQUE_PS in facts.confidentiality) is masked
    assert (INVISIBLE_PATIENT in facts.confidentiality) is invisible
    assert bool(see_document(actor(), AUTHORISED, facts)) is not masked
    if not invisible:  # (hiding from the patient again is no operation at all)
        # a new version with these codes after a plain one masks only if they mask
        operations = metadata_operations({"N^^2.16.840.1.113883.5.25"}, facts.confidentiality)
        assert ("mask" in operations) is masked


@pytest.mark.parametrize(
    ("profession", "mode", "access", "mt", "kind", "expected_mode"),
    [
        (("10", "1.2.250.1.71.1.2.7"), "DIRECTE", "normal", None, Kind.MEDECIN, Mode.NORMAL),
        (
            ("10", "1.2.250.1.71.1.2.7"),
            "DIRECTE",
            "normal",
            "810000000001",
            Kind.MEDECIN_TRAITANT,
            Mode.NORMAL,
        ),
        (
            ("60", "1.2.250.1.71.1.2.7"),
            "DIRECTE",
            "bris_de_glace",
            None,
            Kind.PS,
            Mode.BRIS_DE_GLACE,
        ),
        (
            ("SECRETARIAT_MEDICAL", "1.2.250.1.213.1.1.4.6"),
            "DIRECTE",
            "normal",
            None,
            Kind.CPE,
            Mode.NORMAL,
        ),
        (
            ("10", "1.2.250.1.71.1.2.7"),
            "INDIRECTE",
            "centre_15",
            None,
            Kind.ETABLISSEMENT,
            Mode.CENTRE_15,
        ),
        # AIR: the establishment vouches for the named professional, who acts as such.
        (
            ("10", "1.2.250.1.71.1.2.7"),
            "INDIRECTE_RENFORCEE",
            "normal",
            "810000000001",
            Kind.MEDECIN_TRAITANT,
            Mode.NORMAL,
        ),
        (
            ("60", "1.2.250.1.71.1.2.7"),
            "INDIRECTE_RENFORCEE",
            "normal",
            None,
            Kind.PS,
            Mode.NORMAL,
        ),
    ],
)
def test_actor_of_a_vihf(profession, mode, access, mt, kind, expected_mode) -> None:
    from dmp_xds.policy.facts import actor_of

    who = actor_of(principal("810000000001", profession, access, mode), medecin_traitant=mt)
    assert (who.kind, who.mode) == (kind, expected_mode)
    assert who.person_id == "810000000001" and who.structure_id == "1999000001"


TRE_R01 = "1.2.250.1.71.4.2.5"


@pytest.mark.parametrize(
    ("profession", "specialty", "mode", "mt", "kind"),
    [
        # a physician of occupational medicine (SM25) is the médecin du travail column...
        (("10", "1.2.250.1.71.1.2.7"), ("SM25", TRE_R01), "DIRECTE", None, Kind.MEDECIN_TRAVAIL),
        (
            ("10", "1.2.250.1.71.1.2.7"),
            ("SM25", TRE_R01),
            "INDIRECTE_RENFORCEE",
            None,
            Kind.MEDECIN_TRAVAIL,
        ),
        # ... even if a record named them médecin traitant (the matrix has no such actor)
        (
            ("10", "1.2.250.1.71.1.2.7"),
            ("SM25", TRE_R01),
            "DIRECTE",
            "810000000001",
            Kind.MEDECIN_TRAVAIL,
        ),
        # another specialty, or SM25 in another code system, is a physician as any
        (("10", "1.2.250.1.71.1.2.7"), ("SM26", TRE_R01), "DIRECTE", None, Kind.MEDECIN),
        (("10", "1.2.250.1.71.1.2.7"), ("SM25", "1.2.3.4"), "DIRECTE", None, Kind.MEDECIN),
        (
            ("10", "1.2.250.1.71.1.2.7"),
            ("SM26", TRE_R01),
            "DIRECTE",
            "810000000001",
            Kind.MEDECIN_TRAITANT,
        ),
        # not a physician (a nurse would have no such specialty), plain indirect mode
        (("60", "1.2.250.1.71.1.2.7"), ("SM25", TRE_R01), "DIRECTE", None, Kind.PS),
        (("10", "1.2.250.1.71.1.2.7"), ("SM25", TRE_R01), "INDIRECTE", None, Kind.ETABLISSEMENT),
    ],
)
def test_the_medecin_du_travail(profession, specialty, mode, mt, kind) -> None:
    from dmp_xds.policy.facts import actor_of

    who = actor_of(
        principal("810000000001", profession, "normal", mode, specialty), medecin_traitant=mt
    )
    assert who.kind is kind


# --- the record's own services (TD0.2 ... TD1.6) -------------------------------------------------
T = RecordTransaction
MT, MED, PS, CPE, ES, TRAVAIL = (
    Kind.MEDECIN_TRAITANT,
    Kind.MEDECIN,
    Kind.PS,
    Kind.CPE,
    Kind.ETABLISSEMENT,
    Kind.MEDECIN_TRAVAIL,
)
BDG, C15 = Mode.BRIS_DE_GLACE, Mode.CENTRE_15


@pytest.mark.parametrize(
    ("who", "record", "transaction", "allowed", "reason"),
    [
        # TD0.2: everyone, a blocked professional too (it is how they learn it).
        (actor(PS), NOT_AUTHORISED, T.EXISTENCE, True, "allowed"),
        (actor(ES, C15), NOT_AUTHORISED, T.EXISTENCE, True, "allowed"),
        (actor(CPE), NOT_AUTHORISED, T.EXISTENCE, True, "allowed"),
        (actor(MED, BDG), BLOCKED, T.EXISTENCE, True, "allowed"),
        (actor(ES, BDG), NOT_AUTHORISED, T.EXISTENCE, False, "cannot act"),
        # TD1.3a: everyone, but not a blocked professional.
        (actor(ES), NOT_AUTHORISED, T.CONSULT, True, "allowed"),
        (actor(PS, BDG), NOT_AUTHORISED, T.CONSULT, True, "allowed"),
        (actor(TRAVAIL), NOT_AUTHORISED, T.CONSULT, True, "allowed"),
        (actor(MED), BLOCKED, T.CONSULT, False, "blocked"),
        # TD0.3 "se déclarer autorisé": PS, médecin, MT in normal mode, CPE (note 1).
        (actor(PS), NOT_AUTHORISED, T.AUTHORISE, True, "allowed"),
        (actor(MED), NOT_AUTHORISED, T.AUTHORISE, True, "allowed"),
        (actor(MT), AUTHORISED, T.AUTHORISE, True, "allowed"),
        (actor(CPE), NOT_AUTHORISED, T.AUTHORISE, True, "allowed"),
        (actor(ES), NOT_AUTHORISED, T.AUTHORISE, False, "not allowed to es_normal"),
        (actor(MED, BDG), NOT_AUTHORISED, T.AUTHORISE, False, "medecin_bris_de_glace"),
        (actor(PS, C15), NOT_AUTHORISED, T.AUTHORISE, False, "ps_regulation"),
        (actor(TRAVAIL), NOT_AUTHORISED, T.AUTHORISE, False, "medecin_travail"),
        (actor(PS), BLOCKED, T.AUTHORISE, False, "blocked"),
        # Becoming the médecin traitant: the same row, and a médecin only.
        (actor(MED), NOT_AUTHORISED, T.DESIGNATE_MT, True, "allowed"),
        (actor(MT), AUTHORISED, T.DESIGNATE_MT, True, "allowed"),
        (actor(PS), AUTHORISED, T.DESIGNATE_MT, False, "only a médecin"),
        (actor(CPE), AUTHORISED, T.DESIGNATE_MT, False, "only a médecin"),
        (actor(ES), AUTHORISED, T.DESIGNATE_MT, False, "es_normal"),
        (actor(MED, C15), AUTHORISED, T.DESIGNATE_MT, False, "medecin_regulation"),
        (actor(MED), BLOCKED, T.DESIGNATE_MT, False, "blocked"),
        # "Supprimer son autorisation": as above minus the CPE.
        (actor(PS), AUTHORISED, T.REVOKE, True, "allowed"),
        (actor(MT), AUTHORISED, T.REVOKE, True, "allowed"),
        (actor(CPE), AUTHORISED, T.REVOKE, False, "not allowed to cpe"),
        (actor(ES), AUTHORISED, T.REVOKE, False, "es_normal"),
        (actor(MED, BDG), AUTHORISED, T.REVOKE, False, "medecin_bris_de_glace"),
        # "Se supprimer MT": the médecin traitant only.
        (actor(MT), AUTHORISED, T.REVOKE_MT, True, "allowed"),
        (actor(MED), AUTHORISED, T.REVOKE_MT, False, "medecin_normal"),
        (actor(PS), AUTHORISED, T.REVOKE_MT, False, "ps_normal"),
        (actor(MT, BDG), AUTHORISED, T.REVOKE_MT, False, "mt_bris_de_glace"),
        # Blocking and unblocking (our extension): the médecin traitant, normal mode.
        (actor(MT), AUTHORISED, T.BLOCK, True, "allowed"),
        (actor(MT), AUTHORISED, T.UNBLOCK, True, "allowed"),
        (actor(MED), AUTHORISED, T.BLOCK, False, "blocks or unblocks"),
        (actor(MT, BDG), AUTHORISED, T.UNBLOCK, False, "blocks or unblocks"),
        (actor(ES), AUTHORISED, T.BLOCK, False, "blocks or unblocks"),
        # TD1.6: PS, médecin, MT in normal mode and the médecin du travail.
        (actor(PS), AUTHORISED, T.LIST_AUTHORISATIONS, True, "allowed"),
        (actor(MED), NOT_AUTHORISED, T.LIST_AUTHORISATIONS, True, "allowed"),
        (actor(MT), AUTHORISED, T.LIST_AUTHORISATIONS, True, "allowed"),
        (actor(TRAVAIL), AUTHORISED, T.LIST_AUTHORISATIONS, True, "allowed"),
        (actor(CPE), AUTHORISED, T.LIST_AUTHORISATIONS, False, "not allowed to cpe"),
        (actor(ES), AUTHORISED, T.LIST_AUTHORISATIONS, False, "es_normal"),
        (actor(MED, C15), AUTHORISED, T.LIST_AUTHORISATIONS, False, "medecin_regulation"),
        (actor(MED), BLOCKED, T.LIST_AUTHORISATIONS, False, "blocked"),
        # TD1.1, TD1.2, TD1.3b, TD1.4: not in the matrix; normal mode, not blocked.
        (actor(MED), Record(exists=False), T.CREATE, True, "allowed"),
        (actor(ES), Record(exists=False), T.CREATE, True, "allowed"),
        (actor(MED, BDG), Record(exists=False), T.CREATE, False, "normal access mode"),
        (actor(ES, C15), Record(exists=False), T.CREATE, False, "normal access mode"),
        (actor(ES, BDG), Record(exists=False), T.CREATE, False, "cannot act"),
        (actor(PS), NOT_AUTHORISED, T.MODIFY, True, "allowed"),
        (actor(MED, C15), AUTHORISED, T.MODIFY, False, "normal access mode"),
        (actor(PS), BLOCKED, T.MODIFY, False, "blocked"),
        (actor(ES), NOT_AUTHORISED, T.CLOSE, True, "allowed"),
        (actor(MT, BDG), AUTHORISED, T.CLOSE, False, "normal access mode"),
        (actor(MED), BLOCKED, T.CLOSE, False, "blocked"),
        (actor(MED), CLOSED, T.REACTIVATE, True, "allowed"),
        (actor(MED), BLOCKED, T.REACTIVATE, False, "blocked"),
        # The record's own state is not policy's: the record layer answers it with its codes.
        (actor(MED), CLOSED, T.MODIFY, True, "allowed"),
        (actor(MED), Record(exists=False), T.AUTHORISE, True, "allowed"),
    ],
)
def test_manage_record(who: Actor, record: Record, transaction, allowed: bool, reason) -> None:
    decision = manage_record(who, record, transaction)
    assert decision.allowed is allowed
    assert reason in decision.reason


@pytest.mark.parametrize("transaction", [T.MODIFY, T.CLOSE])
def test_records_attached_to_mes_are_not_revised(transaction) -> None:
    """Note 10: TD1.3b and TD1.4 only for records not attached to Mon espace santé."""
    assert manage_record(actor(MT), AUTHORISED, transaction)
    refused = manage_record(actor(MT), AUTHORISED, transaction, attached_to_mes=True)
    assert not refused and "MES" in refused.reason
    assert manage_record(actor(MT), CLOSED, T.REACTIVATE, attached_to_mes=True)


def test_record_transactions_name_matrix_rows() -> None:
    """Those that are matrix rows must be in the shipped matrix (a renamed row would
    otherwise refuse everyone silently)."""
    ours = {T.DESIGNATE_MT, T.BLOCK, T.UNBLOCK, T.CREATE, T.REACTIVATE, T.MODIFY, T.CLOSE}
    assert {t.value for t in T if t not in ours} <= load_matrix().actions


@pytest.mark.parametrize(
    ("who", "allowed", "reason"),
    [
        (actor(PS, C15), True, "allowed"),
        (actor(MED, C15), True, "allowed"),
        (actor(MT, C15), True, "allowed"),
        (actor(ES, C15), True, "allowed"),
        (actor(PS), False, "régulation"),
        (actor(MED), False, "régulation"),
        (actor(ES), False, "régulation"),
        (actor(CPE), False, "régulation"),
        (actor(MED, BDG), False, "régulation"),
        (actor(TRAVAIL), False, "régulation"),
    ],
)
def test_find_patients_without_ins(who: Actor, allowed: bool, reason: str) -> None:
    decision = find_patients(who)
    assert decision.allowed is allowed
    assert reason in decision.reason


SAME, OWN = True, None


@pytest.mark.parametrize(
    ("who", "owner", "in_structure", "since", "allowed", "reason"),
    [
        (actor(PS), OWN, False, False, True, "allowed"),
        (actor(MED, BDG), OWN, False, False, True, "allowed"),
        (actor(TRAVAIL), OWN, False, True, True, "allowed"),
        (actor(MED), OTHER, False, True, True, "allowed"),  # its own id given as owner
        (actor(MED), AUTHOR, SAME, True, False, "only their own"),
        (actor(ES), AUTHOR, SAME, True, False, "only their own"),
        # Note 2: a CPE lists a professional of its own structure.
        (actor(CPE), OWN, False, False, True, "allowed"),
        (actor(CPE), AUTHOR, SAME, False, True, "allowed"),
        (actor(CPE), AUTHOR, False, False, False, "own structure"),
        # Note 3: an institution certificate lists new authorisations, since a date.
        (actor(ES), OWN, False, True, True, "allowed"),
        (actor(ES), OWN, False, False, False, "startDate"),
        (actor(ES, C15), OWN, False, True, False, "es_regulation"),
    ],
)
def test_list_patients(who, owner, in_structure, since, allowed, reason) -> None:
    decision = list_patients(who, owner=owner, owner_in_structure=in_structure, since_given=since)
    assert decision.allowed is allowed
    assert reason in decision.reason
    assert new_authorisations_only(who) is (who.kind is ES)


# --- the patient's side, through the host's patient portal -------------------------------------
PATIENT_ID, GUARDIAN = "2070585756270", "10B0999992/RL-0001"
PAT, REP = actor(Kind.PATIENT, person=PATIENT_ID), actor(Kind.REPRESENTANT_LEGAL, person=GUARDIAN)


@pytest.mark.parametrize(
    ("who", "record", "allowed", "reason"),
    [
        # their own record: no authorisation needed, and no block concerns them
        (PAT, NOT_AUTHORISED, True, "allowed"),
        (PAT, BLOCKED, True, "allowed"),
        (REP, NOT_AUTHORISED, True, "allowed"),
        (PAT, CLOSED, False, "closed"),
        (PAT, Record(exists=False), False, "no record"),
        # normal mode only: an emergency mode is the professionals'
        (actor(Kind.PATIENT, Mode.BRIS_DE_GLACE, PATIENT_ID), NOT_AUTHORISED, False, "cannot act"),
        (actor(Kind.REPRESENTANT_LEGAL, Mode.CENTRE_15), NOT_AUTHORISED, False, "cannot act"),
    ],
)
def test_the_patient_consults_their_record(who, record, allowed, reason) -> None:
    decision = consult_record(who, record)
    assert decision.allowed is allowed
    assert reason in decision.reason
    assert feed_record(who, record).allowed is allowed  # TD2.1: patient-contributed documents


@pytest.mark.parametrize(
    ("who", "document", "allowed", "reason"),
    [
        # masked documents stay visible to the patient...
        (PAT, doc(), True, "allowed"),
        (PAT, doc(v.APPROVED, MASQUE_PS), True, "allowed"),
        (REP, doc(v.APPROVED, MASQUE_PS), True, "allowed"),
        (PAT, doc(v.ARCHIVED), True, "allowed"),
        (PAT, doc(v.DEPRECATED), True, "allowed"),
        # ... not those awaiting the announcement consultation
        (PAT, doc(v.APPROVED, INVISIBLE_PATIENT), False, "TD3.2_invisibles_patient"),
        (REP, doc(v.APPROVED, INVISIBLE_PATIENT), False, "TD3.2_invisibles_patient"),
        # hidden from legal representatives: the patient sees it, the representative not
        (PAT, doc(v.APPROVED, INVISIBLE_REPRESENTANTS_LEGAUX), True, "allowed"),
        (REP, doc(v.APPROVED, INVISIBLE_REPRESENTANTS_LEGAUX), False, "legal representatives"),
        (PAT, doc(v.DELETED), False, "deleted"),
    ],
)
def test_what_the_patient_sees(who: Actor, document: Document, allowed: bool, reason) -> None:
    # the habilitation matrix is the professions': nothing of it applies to the patient
    nothing = Habilitations.parse("profession,type_code,allowed\n*,*,non\n")
    decision = see_document(who, NOT_AUTHORISED, document, habilitations=nothing)
    assert decision.allowed is allowed
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("who", "operation", "document", "allowed", "reason"),
    [
        # archiving, unarchiving, deleting what the patient wrote ("*": or the patient)
        (PAT, "delete", doc(patient=True), True, "allowed"),
        (PAT, "archive", doc(patient=True), True, "allowed"),
        (PAT, "unarchive", doc(v.ARCHIVED, patient=True), True, "allowed"),
        (REP, "delete", doc(patient=True), True, "allowed"),
        # not a professional's document
        (PAT, "delete", doc(), False, "author"),
        (PAT, "archive", doc(), False, "author"),
        # masking and visibility are the professionals'
        (PAT, "mask", doc(), False, "TD3.3a_masquer"),
        (PAT, "unmask", doc(v.APPROVED, MASQUE_PS), False, "TD3.3a_demasquer"),
        (PAT, "mask", doc(patient=True), False, "TD3.3a_masquer"),
        # correcting: their own contributions only
        (PAT, "revise", doc(patient=True), True, "allowed"),
        (PAT, "revise", doc(), False, "author"),
        # a document hidden from them is one they cannot find
        (PAT, "delete", doc(v.APPROVED, INVISIBLE_PATIENT), False, "cannot find"),
    ],
)
def test_what_the_patient_changes(who, operation, document, allowed, reason) -> None:
    decision = change_document(who, NOT_AUTHORISED, document, operation)
    assert decision.allowed is allowed
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("who", "record", "transaction", "allowed", "reason"),
    [
        (PAT, NOT_AUTHORISED, T.EXISTENCE, True, "allowed"),
        (PAT, NOT_AUTHORISED, T.CONSULT, True, "allowed"),
        # TD1.6: who is authorised or blocked on their own record
        (PAT, NOT_AUTHORISED, T.LIST_AUTHORISATIONS, True, "allowed"),
        (PAT, BLOCKED, T.LIST_AUTHORISATIONS, True, "allowed"),
        (REP, NOT_AUTHORISED, T.LIST_AUTHORISATIONS, True, "allowed"),
        # blocking a professional is the patient's decision
        (PAT, NOT_AUTHORISED, T.BLOCK, True, "allowed"),
        (REP, NOT_AUTHORISED, T.UNBLOCK, True, "allowed"),
        # authorisations are the professionals' own declarations
        (PAT, NOT_AUTHORISED, T.AUTHORISE, False, "not allowed to patient"),
        (PAT, NOT_AUTHORISED, T.DESIGNATE_MT, False, "not allowed to patient"),
        (PAT, NOT_AUTHORISED, T.REVOKE, False, "not allowed to patient"),
        (PAT, NOT_AUTHORISED, T.REVOKE_MT, False, "not allowed to patient"),
        # the record's life is not the patient's call here (Mon espace santé's)
        (PAT, Record(exists=False), T.CREATE, False, "not the patient's"),
        (PAT, NOT_AUTHORISED, T.CLOSE, False, "not the patient's"),
        (PAT, NOT_AUTHORISED, T.MODIFY, False, "not the patient's"),
        (PAT, CLOSED, T.REACTIVATE, False, "not the patient's"),
    ],
)
def test_the_patients_record_services(who, record, transaction, allowed, reason) -> None:
    decision = manage_record(who, record, transaction)
    assert decision.allowed is allowed
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("who", "document", "allowed"),
    [
        # the patient's side adds documents the patient wrote, nobody else
        (PAT, Document(v.APPROVED, frozenset(), frozenset({PATIENT_ID}), frozenset(), True), True),
        (REP, Document(v.APPROVED, frozenset(), frozenset({PATIENT_ID}), frozenset(), True), True),
        (PAT, doc(), False),  # a professional as author
        (  # the patient and a professional
            PAT,
            Document(v.APPROVED, frozenset(), frozenset({PATIENT_ID, AUTHOR}), frozenset(), True),
            False,
        ),
        (PAT, Document(v.APPROVED, frozenset(), frozenset(), frozenset()), False),  # nobody
        # professionals state their own authors
        (actor(), doc(patient=True), True),
        (actor(Kind.ETABLISSEMENT), doc(), True),
    ],
)
def test_what_the_patient_adds(who: Actor, document: Document, allowed: bool) -> None:
    assert contribute(who, document).allowed is allowed


def test_the_patient_lists_no_patients_and_searches_none() -> None:
    assert not list_patients(PAT, owner=None, owner_in_structure=False, since_given=True)
    assert not find_patients(PAT)


@pytest.mark.parametrize(
    ("role", "name_id", "kind"),
    [
        (("PAT", "2.16.840.1.113883.5.110"), PATIENT_ID, Kind.PATIENT),
        (("GUARD", "2.16.840.1.113883.5.111"), GUARDIAN, Kind.REPRESENTANT_LEGAL),
        # the codes in other systems are no patient roles: plain indirect, the institution
        (("PAT", "2.16.840.1.113883.5.111"), PATIENT_ID, Kind.ETABLISSEMENT),
        (("GUARD", "2.16.840.1.113883.5.110"), GUARDIAN, Kind.ETABLISSEMENT),
    ],
)
def test_actor_of_a_patient_portals_vihf(role, name_id, kind) -> None:
    from dmp_xds.policy.facts import actor_of

    who = actor_of(principal(name_id, role, "normal", "INDIRECTE"))
    assert who.kind is kind
    assert who.person_id == name_id
