"""Who may purge metadata with ITI-62 (policy/purge.py), as a table."""

from __future__ import annotations

import datetime as dt

import pytest

from dmp_xds.metadata.datatypes import parse_patient_id
from dmp_xds.policy.purge import may_purge
from dmp_xds.security.principal import (
    AccessMode,
    AuthenticationMode,
    CodedValue,
    Principal,
    Software,
)

HOST_PHYSICIAN = "810000000001"
OTHER_PHYSICIAN = "810000000002"
MEDECIN = ("10", "1.2.250.1.71.1.2.7")
INFIRMIER = ("60", "1.2.250.1.71.1.2.7")
CPE_ROLE = ("10", "1.2.250.1.999.9")  # the right code in another code system


def principal(
    name_id: str = HOST_PHYSICIAN,
    profession: tuple[str, str] = MEDECIN,
    access: str = "normal",
    mode: str = "INDIRECTE",
) -> Principal:
    now = dt.datetime(2026, 1, 15, tzinfo=dt.UTC)
    return Principal(
        assertion_id="_a",
        name_id=name_id,
        subject_name="HOTE CLAIRE",
        roles=(CodedValue(*profession),),
        structure_id="1999000001",
        activity_sector=CodedValue("SA01", "1.2.250.1.71.4.2.4"),
        authentication_mode=AuthenticationMode(mode),
        access_mode=AccessMode(access),
        patient=parse_patient_id("1^^^&1.2.250.1.213.1.4.10&ISO"),
        software=Software("LPS", "1", "HOMO-1"),
        vihf_version="3.0",
        issue_instant=now,
        expires=now,
    )


LISTED = (HOST_PHYSICIAN,)


@pytest.mark.parametrize(
    ("caller", "authorised", "allowed", "reason"),
    [
        (principal(), LISTED, True, "allowed"),
        (principal(mode="DIRECTE"), LISTED, True, "allowed"),
        (principal(), (OTHER_PHYSICIAN, HOST_PHYSICIAN), True, "allowed"),
        # The default: nobody is listed, nobody may purge.
        (principal(), (), False, "no professional is authorised"),
        (principal(name_id=OTHER_PHYSICIAN), LISTED, False, "not authorised"),
        # Compared exactly: no trimming, no prefix guessing.
        (principal(name_id=HOST_PHYSICIAN[1:]), LISTED, False, "not authorised"),
        (principal(name_id=f" {HOST_PHYSICIAN}"), LISTED, False, "not authorised"),
        (principal(profession=INFIRMIER), LISTED, False, "only physicians"),
        (principal(profession=CPE_ROLE), LISTED, False, "only physicians"),
        (principal(access="bris_de_glace"), LISTED, False, "bris_de_glace access mode"),
        (principal(access="centre_15"), LISTED, False, "centre_15 access mode"),
        (None, LISTED, False, "no verified caller"),
    ],
)
def test_may_purge(caller, authorised, allowed: bool, reason: str) -> None:
    decision = may_purge(caller, frozenset(authorised))
    assert decision.allowed is allowed
    assert bool(decision) is allowed
    assert reason in decision.reason
