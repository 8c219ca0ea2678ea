"""The VIHF's patient is the only one a call may touch (pure rules, as a table)."""

from __future__ import annotations

import pytest

from dmp_xds.errors import ErrorCode
from dmp_xds.metadata.datatypes import PatientId
from dmp_xds.policy.patient import query_errors, same_patient, submission_errors

INS = "1.2.250.1.213.1.4.10"
ME = PatientId("1234567890123", INS)


@pytest.mark.parametrize(
    ("value", "same"),
    [
        (f"1234567890123^^^&{INS}&ISO", True),
        (f"1234567890123^^^&{INS}&ISO^NH", True),  # the DMP's identifier type plays no part
        (f"1234567890123^^^&{INS}&ISO^NH^^20100907", True),
        (f"1234567890124^^^&{INS}&ISO", False),
        ("1234567890123^^^&1.2.250.1.213.1.4.8&ISO", False),  # same number, other authority
        ("1234567890123", False),
        ("", False),
        (None, False),
    ],
)
def test_same_patient(value, same) -> None:
    assert same_patient(ME, value) is same


def test_nobody_authorised_matches_nothing() -> None:
    assert not same_patient(None, f"1234567890123^^^&{INS}&ISO")


def test_submission_errors_name_each_object() -> None:
    errors = submission_errors(
        ME,
        [
            ("SubmissionSet SS", f"1234567890123^^^&{INS}&ISO"),
            ("DocumentEntry D1", f"9999999999999^^^&{INS}&ISO"),
            ("Folder F", None),  # left to metadata validation
        ],
    )
    assert [e.location for e in errors] == ["DocumentEntry D1 / patientId"]
    assert errors[0].code is ErrorCode.PATIENT_ID_DOES_NOT_MATCH


def test_query_errors() -> None:
    mine, other = f"1234567890123^^^&{INS}&ISO", f"9999999999999^^^&{INS}&ISO"
    assert query_errors(ME, {"$XDSDocumentEntryPatientId": [[mine]]}) == []
    [error] = query_errors(ME, {"$patientId": [[other]], "$XDSDocumentEntryStatus": [["x"]]})
    assert error.location == "$patientId"
    # Not a CX at all: the stored query reports its own error.
    assert query_errors(ME, {"$XDSFolderPatientId": [["garbage"]]}) == []
    assert query_errors(ME, {"$XDSDocumentEntryEntryUUID": [["urn:uuid:x"]]}) == []
