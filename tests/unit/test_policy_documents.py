"""Document-level DMP rules as tables: searches (metadata or references), the habilitation
matrix, and which TD3.3 operation an ITI-57 change is."""

from __future__ import annotations

import pytest

from dmp_xds.metadata import vocabulary as v
from dmp_xds.metadata.model import Author, Code, DocumentEntry
from dmp_xds.policy.access import (
    INVISIBLE_PATIENT,
    INVISIBLE_REPRESENTANTS_LEGAUX,
    MASQUE_PS,
    REVISE,
    Actor,
    Authorisation,
    Document,
    Kind,
    Mode,
    Record,
    Refusal,
    Search,
    change_document,
    consult_record,
    feed_record,
    find_document,
    search_record,
    see_document,
)
from dmp_xds.policy.habilitations import Habilitations, load_habilitations
from dmp_xds.policy.updates import (
    UnsupportedChange,
    metadata_operations,
    revises,
    status_operation,
)

AUTHOR, OTHER = "810000000001", "810000000002"
CLINIC, ELSEWHERE = "1999000001", "1999000002"
LETTER = "11490-0^^2.16.840.1.113883.6.1"
IMAGING = "18748-4^^2.16.840.1.113883.6.1"


def who(kind: Kind, mode: Mode = Mode.NORMAL, person: str = OTHER, structure: str = ELSEWHERE):
    return Actor(kind, mode, person, structure, "10" if "medecin" in kind else "60")


def doc(status: str = v.APPROVED, *codes: str, structure: str = CLINIC) -> Document:
    return Document(status, frozenset({"N", *codes}), frozenset({AUTHOR}), frozenset({structure}))


AUTHORISED = Record(authorisation=Authorisation.AUTHORISED)


@pytest.mark.parametrize(
    ("actor", "record", "allowed", "search"),
    [
        (who(Kind.MEDECIN), AUTHORISED, True, Search.METADATA),
        (who(Kind.MEDECIN), Record(), False, Search.METADATA),
        (who(Kind.PS, Mode.BRIS_DE_GLACE), Record(), True, Search.METADATA),
        # the institution and CPE cards look up references, with no authorisation needed...
        (who(Kind.ETABLISSEMENT), Record(), True, Search.REFERENCES),
        (who(Kind.CPE), Record(), True, Search.REFERENCES),
        # ... but not on a record that blocks them, is closed or does not exist
        (
            who(Kind.ETABLISSEMENT),
            Record(authorisation=Authorisation.BLOCKED),
            False,
            Search.REFERENCES,
        ),
        (who(Kind.ETABLISSEMENT), Record(closed=True), False, Search.REFERENCES),
        (who(Kind.ETABLISSEMENT), Record(exists=False), False, Search.REFERENCES),
        # in régulation, an opposition to emergency access closes the references too
        (who(Kind.ETABLISSEMENT, Mode.CENTRE_15), Record(), True, Search.REFERENCES),
        (
            who(Kind.ETABLISSEMENT, Mode.CENTRE_15),
            Record(opposes_emergency_access=True),
            False,
            Search.REFERENCES,
        ),
        (
            who(Kind.ETABLISSEMENT, Mode.CENTRE_15),
            Record(opposes_break_glass=True),
            True,
            Search.REFERENCES,
        ),
    ],
)
def test_search_record(actor: Actor, record: Record, allowed: bool, search: Search) -> None:
    decision, kind = search_record(actor, record)
    assert (bool(decision), kind) == (allowed, search)


@pytest.mark.parametrize(
    ("record", "refusal"),
    [
        (Record(exists=False), Refusal.NO_RECORD),
        (Record(closed=True, authorisation=Authorisation.AUTHORISED), Refusal.CLOSED),
        (Record(authorisation=Authorisation.BLOCKED), Refusal.DENIED),
        (Record(), Refusal.DENIED),
    ],
)
def test_refusals_say_why(record: Record, refusal: Refusal) -> None:
    """The kind of refusal decides the error code the caller reads (patients/gate.py)."""
    for decision in (consult_record(who(Kind.MEDECIN), record), feed_record(who(Kind.PS), record)):
        if not decision:
            assert decision.refusal is refusal


@pytest.mark.parametrize(
    ("actor", "document", "search", "shown"),
    [
        # references: what the actor could delete, i.e. its structure's documents (note 9)
        (who(Kind.ETABLISSEMENT, structure=CLINIC), doc(), Search.REFERENCES, True),
        (who(Kind.ETABLISSEMENT), doc(), Search.REFERENCES, False),
        (who(Kind.ETABLISSEMENT, structure=CLINIC), doc(v.DELETED), Search.REFERENCES, False),
        (who(Kind.CPE, structure=CLINIC), doc(v.ARCHIVED), Search.REFERENCES, True),
        # metadata: the consultation rules
        (who(Kind.MEDECIN), doc(), Search.METADATA, True),
        (who(Kind.MEDECIN), doc(v.APPROVED, MASQUE_PS), Search.METADATA, False),
        (who(Kind.MEDECIN, person=AUTHOR), doc(v.APPROVED, MASQUE_PS), Search.METADATA, True),
    ],
)
def test_find_document(actor: Actor, document: Document, search: Search, shown: bool) -> None:
    assert bool(find_document(actor, AUTHORISED, document, search)) is shown


def test_habilitations_most_specific_row_wins() -> None:
    rules = Habilitations.parse(
        "# comment\nprofession,type_code,allowed\n*,*,oui\n60,*,non\n60,11490-0,oui\n"
        f"*,{IMAGING},non\n10,{IMAGING},oui\n"
    )
    assert rules.may_read("60", LETTER)  # (60, bare code) beats (60, *)
    assert not rules.may_read("60", IMAGING)
    assert not rules.may_read("50", IMAGING)  # (*, type) beats (*, *)
    assert rules.may_read("10", IMAGING)
    assert rules.may_read("50", LETTER)
    fail_closed = Habilitations.parse("profession,type_code,allowed\n10,*,oui\n")
    assert not fail_closed.may_read("60", LETTER)
    assert load_habilitations().may_read("60", IMAGING)  # the shipped file allows all


@pytest.mark.parametrize(
    "text",
    [
        "profession,type,allowed\n*,*,oui\n",
        "profession,type_code,allowed\n*,*,maybe\n",
        "profession,type_code,allowed\n*,*,oui\n*,*,non\n",
        "profession,type_code,allowed\n,*,oui\n",
    ],
)
def test_malformed_habilitations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="habilitations"):
        Habilitations.parse(text)


def test_habilitations_filter_documents() -> None:
    rules = Habilitations.parse("profession,type_code,allowed\n*,*,oui\n60,*,non\n")
    letter = Document(v.APPROVED, frozenset({"N"}), frozenset(), frozenset(), type_code=LETTER)
    nurse, doctor = who(Kind.PS), who(Kind.MEDECIN)
    assert not see_document(nurse, AUTHORISED, letter, habilitations=rules)
    assert see_document(doctor, AUTHORISED, letter, habilitations=rules)


@pytest.mark.parametrize(
    ("before", "after", "operations"),
    [
        ({"N"}, {"N", MASQUE_PS}, ["mask"]),
        ({"N", MASQUE_PS}, {"N"}, ["unmask"]),
        ({"N", INVISIBLE_PATIENT}, {"N"}, ["make_visible_to_patient"]),
        ({"N", INVISIBLE_REPRESENTANTS_LEGAUX}, {"N"}, ["make_visible_to_patient"]),
        ({"N", INVISIBLE_PATIENT}, {"N", MASQUE_PS}, ["mask", "make_visible_to_patient"]),
        ({"N"}, {"R"}, [REVISE]),
        ({"N"}, {"N"}, [REVISE]),
    ],
)
def test_metadata_operations(before: set, after: set, operations: list[str]) -> None:
    assert metadata_operations(before, after) == operations


def test_hiding_from_the_patient_again_is_unsupported() -> None:
    with pytest.raises(UnsupportedChange):
        metadata_operations({"N"}, {"N", INVISIBLE_PATIENT})


def _entry(**changes: object) -> DocumentEntry:
    base = DocumentEntry(
        id="urn:uuid:1",
        element=None,  # type: ignore[arg-type]
        title="Compte rendu",
        type_code=Code("11490-0", "2.16.840.1.113883.6.1", "Lettre de sortie"),
        event_codes=[Code("a", "s"), Code("b", "s")],
        confidentiality_codes=[Code("N", "2.16.840.1.113883.5.25")],
        authors=[Author("899900000011^MEDECIN", ["CENTRE"], ["r1", "r2"])],
        creation_time="20260101120000",
        hash="ABCDEF",
    )
    for name, value in changes.items():
        setattr(base, name, value)
    return base


@pytest.mark.parametrize(
    ("changes", "revised"),
    [
        ({}, False),
        # what a masking or a visibility change touches
        (
            {
                "confidentiality_codes": [
                    Code("N", "2.16.840.1.113883.5.25"),
                    Code("MASQUE_PS", "x"),
                ]
            },
            False,
        ),
        # sent back re-ordered, re-labelled or in another case: the same metadata
        ({"event_codes": [Code("b", "s", "B"), Code("a", "s")]}, False),
        ({"type_code": Code("11490-0", "2.16.840.1.113883.6.1", "Autre libellé")}, False),
        ({"authors": [Author("899900000011^MEDECIN", ["CENTRE"], ["r2", "r1"])]}, False),
        ({"hash": "abcdef"}, False),
        # anything else is a correction
        ({"title": "Autre titre"}, True),
        ({"authors": [Author("899900000099^AUTRE")]}, True),
        ({"type_code": Code("34133-9", "2.16.840.1.113883.6.1")}, True),
        ({"event_codes": [Code("a", "s")]}, True),
        ({"creation_time": "20250101120000"}, True),
        ({"hash": "0123"}, True),
        ({"id": "urn:uuid:2", "lid": "urn:uuid:1", "version": "2", "status": "x"}, False),
    ],
)
def test_a_new_version_revises_more_than_its_codes(changes: dict, revised: bool) -> None:
    assert revises(_entry(), _entry(**changes)) is revised


@pytest.mark.parametrize(
    ("original", "new", "operation"),
    [
        (v.APPROVED, v.ARCHIVED, "archive"),
        (v.ARCHIVED, v.APPROVED, "unarchive"),
        (v.APPROVED, v.DELETED, "delete"),
        (v.ARCHIVED, v.DELETED, "delete"),
        (v.APPROVED, v.DEPRECATED, REVISE),
        (v.DEPRECATED, v.APPROVED, REVISE),
        (v.DELETED, v.APPROVED, None),
        (v.ARCHIVED, v.DEPRECATED, REVISE),
    ],
)
def test_status_operation(original: str, new: str, operation: str | None) -> None:
    if operation is None:
        with pytest.raises(UnsupportedChange):
            status_operation(original, new)
    else:
        assert status_operation(original, new) == operation


@pytest.mark.parametrize(
    ("actor", "document", "allowed"),
    [
        (who(Kind.MEDECIN, person=AUTHOR), doc(), True),
        (who(Kind.MEDECIN), doc(), False),  # not the author
        (who(Kind.ETABLISSEMENT, structure=CLINIC), doc(), True),  # the author's structure
        (who(Kind.ETABLISSEMENT), doc(), False),
        (who(Kind.CPE, structure=CLINIC), doc(), True),
        # the médecin du travail feeds the record, so corrects its own documents
        (who(Kind.MEDECIN_TRAVAIL, person=AUTHOR), doc(), True),
    ],
)
def test_revise_is_the_submitters_business(actor: Actor, document: Document, allowed) -> None:
    assert bool(change_document(actor, AUTHORISED, document, REVISE)) is allowed
