"""Who may purge metadata with ITI-62 (policy/purge.py), as a table."""

from __future__ import annotations

import pytest

from dmp_xds.metadata import vocabulary as v
from dmp_xds.policy.purge import may_purge, purgeable
from tests.fixtures.principals import HOST_PHYSICIAN, principal

OTHER_PHYSICIAN = "810000000002"
INFIRMIER = ("60", "1.2.250.1.71.1.2.7")
CPE_ROLE = ("10", "1.2.250.1.999.9")  # the right code in another code system


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


A, DEP, ARC, DEL = v.APPROVED, v.DEPRECATED, v.ARCHIVED, v.DELETED


@pytest.mark.parametrize(
    ("versions", "allowed", "reason"),
    [
        ([(1, DEL)], True, "allowed"),
        # a deletion (ITI-57) marks the latest version; the ones it superseded stay Deprecated
        ([(1, DEP), (2, DEP), (3, DEL)], True, "allowed"),
        ([(2, DEL), (1, DEP)], True, "allowed"),  # in any order
        ([(1, DEL), (2, DEL)], True, "allowed"),
        # not deleted: still shown, archived, replaced (Deprecated as the latest), or odd
        ([(1, A)], False, "version 1 is Approved"),
        ([(1, ARC)], False, "version 1 is Archived"),
        ([(1, DEP)], False, "version 1 is Deprecated"),
        ([(1, DEP), (2, A)], False, "version 2 is Approved"),
        ([(1, A), (2, DEL)], False, "version 1 is Approved"),
        ([], False, "no version"),
    ],
)
def test_only_a_deleted_document_is_purged(versions, allowed: bool, reason: str) -> None:
    decision = purgeable(versions)
    assert decision.allowed is allowed
    assert reason in decision.reason
