"""The DMP access rules, one table per rule (policy is pure: no server needed)."""

from __future__ import annotations

import pytest

from dmp_xds.metadata import vocabulary as v
from dmp_xds.policy.access import (
    INVISIBLE_PATIENT,
    MASQUE_PS,
    Actor,
    Authorisation,
    Document,
    Kind,
    Mode,
    Record,
    change_document,
    consult_record,
    feed_record,
    may,
    see_document,
)
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
        (actor(Kind.MEDECIN_TRAITANT), "delete", doc(patient=True), False),  # not its author
        (actor(Kind.MEDECIN_TRAITANT, person=AUTHOR), "delete", doc(patient=True), True),
        (actor(), "rename", doc(), False),
    ],
)
def test_change_document(who: Actor, operation: str, document: Document, allowed: bool) -> None:
    assert change_document(who, AUTHORISED, document, operation).allowed is allowed


def test_change_on_closed_or_blocked_records() -> None:
    assert not change_document(actor(person=AUTHOR), CLOSED, doc(), "archive")
    assert not change_document(actor(person=AUTHOR), BLOCKED, doc(), "archive")


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
    assert facts.confidentiality == {"N", MASQUE_PS}
    assert facts.author_ids == {"810000000001", "2070585756270"}
    assert facts.author_structures == {"1999000001"}
    assert facts.authored_by_patient


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
