"""Who reads a patient's trail (policy.access.read_traces), as a table: the médecin traitant
the whole trail, other professionals their own actions, institution certificates, blocked
professionals and emergency modes nothing."""

from __future__ import annotations

import pytest

from dmp_xds.policy.access import (
    Actor,
    Authorisation,
    Kind,
    Mode,
    Record,
    TraceScope,
    read_traces,
)
from dmp_xds.policy.facts import actor_of
from tests.fixtures.principals import principal

OPEN = Record()
AUTHORISED = Record(authorisation=Authorisation.AUTHORISED)
BLOCKED = Record(authorisation=Authorisation.BLOCKED)
CLOSED = Record(closed=True, authorisation=Authorisation.AUTHORISED)
NO_RECORD = Record(exists=False)
OPPOSED = Record(opposes_break_glass=True, opposes_emergency_access=True)


def actor(kind: Kind, mode: Mode = Mode.NORMAL) -> Actor:
    return Actor(kind, mode, "810000000001", "1999000001")


CASES = [
    # (who, mode, record, scope, reason fragment)
    (Kind.MEDECIN_TRAITANT, Mode.NORMAL, AUTHORISED, TraceScope.RECORD, "whole trail"),
    (Kind.MEDECIN_TRAITANT, Mode.NORMAL, OPEN, TraceScope.RECORD, "whole trail"),
    (Kind.MEDECIN_TRAITANT, Mode.NORMAL, OPPOSED, TraceScope.RECORD, "whole trail"),
    # A closed record has no médecin traitant at work: own actions only.
    (Kind.MEDECIN_TRAITANT, Mode.NORMAL, CLOSED, TraceScope.OWN, "own actions"),
    (Kind.MEDECIN, Mode.NORMAL, AUTHORISED, TraceScope.OWN, "own actions"),
    # No authorisation (any more), or no record at all: still one's own actions.
    (Kind.MEDECIN, Mode.NORMAL, OPEN, TraceScope.OWN, "own actions"),
    (Kind.MEDECIN, Mode.NORMAL, NO_RECORD, TraceScope.OWN, "own actions"),
    (Kind.MEDECIN, Mode.NORMAL, CLOSED, TraceScope.OWN, "own actions"),
    (Kind.PS, Mode.NORMAL, AUTHORISED, TraceScope.OWN, "own actions"),
    (Kind.MEDECIN_TRAVAIL, Mode.NORMAL, OPEN, TraceScope.OWN, "own actions"),
    (Kind.CPE, Mode.NORMAL, OPEN, TraceScope.OWN, "own actions"),
    # Blocked: nothing, whoever it is (the MT role is lost with a block, but say it anyway).
    (Kind.MEDECIN, Mode.NORMAL, BLOCKED, TraceScope.NONE, "blocked"),
    (Kind.PS, Mode.NORMAL, BLOCKED, TraceScope.NONE, "blocked"),
    (Kind.MEDECIN_TRAITANT, Mode.NORMAL, BLOCKED, TraceScope.NONE, "blocked"),
    # An institution certificate names no person: nothing, in any mode.
    (Kind.ETABLISSEMENT, Mode.NORMAL, AUTHORISED, TraceScope.NONE, "institution"),
    (Kind.ETABLISSEMENT, Mode.CENTRE_15, OPEN, TraceScope.NONE, "institution"),
    # Emergency modes read records, not trails.
    (Kind.MEDECIN_TRAITANT, Mode.BRIS_DE_GLACE, AUTHORISED, TraceScope.NONE, "bris_de_glace"),
    (Kind.MEDECIN, Mode.BRIS_DE_GLACE, OPEN, TraceScope.NONE, "bris_de_glace"),
    (Kind.MEDECIN, Mode.CENTRE_15, OPEN, TraceScope.NONE, "centre_15"),
    (Kind.PS, Mode.CENTRE_15, AUTHORISED, TraceScope.NONE, "centre_15"),
    # The patient (or a legal representative) reads their record's whole trail, closed or
    # not; no block concerns them. Normal mode only, like everyone.
    (Kind.PATIENT, Mode.NORMAL, OPEN, TraceScope.RECORD, "patient"),
    (Kind.PATIENT, Mode.NORMAL, CLOSED, TraceScope.RECORD, "patient"),
    (Kind.PATIENT, Mode.NORMAL, BLOCKED, TraceScope.RECORD, "patient"),
    (Kind.REPRESENTANT_LEGAL, Mode.NORMAL, OPEN, TraceScope.RECORD, "patient"),
    (Kind.PATIENT, Mode.BRIS_DE_GLACE, OPEN, TraceScope.NONE, "bris_de_glace"),
]


@pytest.mark.parametrize(
    ("kind", "mode", "record", "scope", "reason"),
    CASES,
    ids=[f"{k.value}-{m.value}-{i}" for i, (k, m, *_rest) in enumerate(CASES)],
)
def test_read_traces(kind: Kind, mode: Mode, record: Record, scope: TraceScope, reason: str):
    decision, got = read_traces(actor(kind, mode), record)
    assert got is scope
    assert bool(decision) is (scope is not TraceScope.NONE)
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("auth_mode", "medecin_traitant", "scope"),
    [
        ("DIRECTE", True, TraceScope.RECORD),
        ("INDIRECTE_RENFORCEE", True, TraceScope.RECORD),  # AIR acts as the professional
        ("INDIRECTE", True, TraceScope.NONE),  # the institution's certificate
        ("DIRECTE", False, TraceScope.OWN),
        ("INDIRECTE_RENFORCEE", False, TraceScope.OWN),
        ("INDIRECTE", False, TraceScope.NONE),
    ],
)
def test_from_a_verified_vihf(auth_mode: str, medecin_traitant: bool, scope: TraceScope):
    caller = principal(mode=auth_mode)
    found = actor_of(caller, medecin_traitant=caller.name_id if medecin_traitant else None)
    assert read_traces(found, AUTHORISED)[1] is scope


def test_a_nurse_is_never_the_whole_trail_reader() -> None:
    nurse = principal(
        name_id="810000000002", profession=("60", "1.2.250.1.71.1.2.7"), mode="DIRECTE"
    )
    # Even if a record's data named them (it cannot: only médecins are MT), a PS is a PS.
    found = actor_of(nurse, medecin_traitant=nurse.name_id)
    assert read_traces(found, AUTHORISED)[1] is TraceScope.OWN
