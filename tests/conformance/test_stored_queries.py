"""Every stored query against one registry data set, table-driven (after the NIST 12346 set:
documents, folders, a replacement), over the real server.

The data set, for one patient, registered through ITI-42:
  SS1: DE1                                      (single document)
  SS2: DE2 in new Folder F1                     (SS->DE2, SS->F1, F1->DE2, SS->(F1->DE2))
  SS3: DE3, DE4, new Folder F2 holding DE3      (SS->DE3, SS->DE4, SS->F2, F2->DE3, SS->(F2->DE3))
  SS4: DE5                                      (to be replaced)
  SS5: DE6 replaces DE5                         (SS->DE6, DE6 RPLC DE5)
Totals: 6 documents (DE5 Deprecated), 5 submission sets, 2 folders, 13 associations.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from lxml import etree

from dmp_xds.client.xds import XdsClient
from dmp_xds.metadata import vocabulary as v
from tests.fixtures.metadata import (
    HAS_MEMBER,
    RPLC,
    Doc,
    association,
    folder,
    new_patient_id,
    submit_objects_request,
    unique_oid,
)
from tests.fixtures.records import open_record

APPROVED, DEPRECATED = v.APPROVED, v.DEPRECATED
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"


@dataclass
class DataSet:
    patient_id: str
    docs: dict[str, Doc]
    uuids: dict[str, str]  # DE1..DE6, F1, F2, SS1..SS5 -> entryUUID
    ss_uids: dict[str, str]
    folder_uids: dict[str, str]


def _register(client: XdsClient, request: etree._Element) -> None:
    result = client.register(request)
    assert result.status == "Success", result.errors


def _uuid_of(client: XdsClient, unique_id: str, query: str, param: str) -> str:
    found = client.stored_query(query, {param: [unique_id]}, return_type="ObjectRef")
    assert found.status == "Success", found.errors
    [ref] = found.objects
    return ref.get("id") or ""


@pytest.fixture(scope="module")
def data(server, database_url, client_for) -> DataSet:
    from dmp_xds.registry.database import make_engine

    pid = new_patient_id()
    engine = make_engine(database_url, pool_size=1)
    with engine.begin() as conn:
        open_record(conn, pid)
    engine.dispose()
    client = client_for(pid)  # signs a VIHF for this patient on every call
    docs = {
        f"DE{i}": Doc(f"document {i}".encode(), creation_time=f"2025010{i}120000")
        for i in range(1, 7)
    }
    docs["DE4"].event_codes = [("E-4", "1.2.250.1.999.9.2", "event four")]
    ss_uids = {f"SS{i}": unique_oid(1) for i in range(1, 6)}
    folder_uids = {"F1": unique_oid(2), "F2": unique_oid(2)}

    def req(ss: str, names: list[str], extra: str = "") -> etree._Element:
        chosen = [docs[n] for n in names]
        for n, d in zip(names, chosen, strict=True):
            d.symbolic_id = n
        return submit_objects_request(
            pid, chosen, registry_side=True, ss_unique_id=ss_uids[ss], extra_objects=extra
        )

    _register(client, req("SS1", ["DE1"]))
    _register(
        client,
        req(
            "SS2",
            ["DE2"],
            folder("F1", pid, unique_id=folder_uids["F1"])
            + association("a-ss-f1", HAS_MEMBER, "SubmissionSet01", "F1")
            + association("a-f1-de2", HAS_MEMBER, "F1", "DE2")
            + association("a-ss-a", HAS_MEMBER, "SubmissionSet01", "a-f1-de2"),
        ),
    )
    _register(
        client,
        req(
            "SS3",
            ["DE3", "DE4"],
            folder("F2", pid, unique_id=folder_uids["F2"])
            + association("a-ss-f2", HAS_MEMBER, "SubmissionSet01", "F2")
            + association("a-f2-de3", HAS_MEMBER, "F2", "DE3")
            + association("a-ss-b", HAS_MEMBER, "SubmissionSet01", "a-f2-de3"),
        ),
    )
    _register(client, req("SS4", ["DE5"]))
    uuids = {
        n: _uuid_of(client, d.unique_id, v.GET_DOCUMENTS, "$XDSDocumentEntryUniqueId")
        for n, d in docs.items()
        if n != "DE6"
    }
    _register(client, req("SS5", ["DE6"], association("a-rplc", RPLC, "DE6", uuids["DE5"])))
    uuids["DE6"] = _uuid_of(
        client, docs["DE6"].unique_id, v.GET_DOCUMENTS, "$XDSDocumentEntryUniqueId"
    )
    for f, uid in folder_uids.items():
        uuids[f] = _uuid_of(client, uid, v.GET_FOLDERS, "$XDSFolderUniqueId")
    for s, uid in ss_uids.items():
        found = client.stored_query(
            v.GET_SUBMISSION_SET_AND_CONTENTS,
            {"$XDSSubmissionSetUniqueId": uid},
            return_type="ObjectRef",
        )
        assert found.status == "Success", found.errors
        uuids[s] = found.objects[0].get("id") or ""
    return DataSet(pid, docs, uuids, ss_uids, folder_uids)


def counts(objects: list[etree._Element]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for o in objects:
        name = etree.QName(o).localname
        if name == "RegistryPackage":
            nodes = {c.get("classificationNode") for c in o.iterfind(f"{{{RIM}}}Classification")}
            name = "Folder" if v.FOLDER_NODE in nodes else "SubmissionSet"
        kinds[name] = kinds.get(name, 0) + 1
    return kinds


# Each case: stored query, parameters (built from the data set), expected counts per kind.
CASES = [
    (
        "find-approved",
        v.FIND_DOCUMENTS,
        lambda d: {
            "$XDSDocumentEntryPatientId": d.patient_id,
            "$XDSDocumentEntryStatus": [APPROVED],
        },
        {"ExtrinsicObject": 5},
    ),
    (
        "find-all-statuses",
        v.FIND_DOCUMENTS,
        lambda d: {
            "$XDSDocumentEntryPatientId": d.patient_id,
            "$XDSDocumentEntryStatus": [APPROVED, DEPRECATED],
        },
        {"ExtrinsicObject": 6},
    ),
    (
        "find-deprecated",
        v.FIND_DOCUMENTS,
        lambda d: {
            "$XDSDocumentEntryPatientId": d.patient_id,
            "$XDSDocumentEntryStatus": [DEPRECATED],
        },
        {"ExtrinsicObject": 1},
    ),
    (
        "find-creation-range",
        v.FIND_DOCUMENTS,
        lambda d: {
            "$XDSDocumentEntryPatientId": d.patient_id,
            "$XDSDocumentEntryStatus": [APPROVED, DEPRECATED],
            "$XDSDocumentEntryCreationTimeFrom": "20250102120000",
            "$XDSDocumentEntryCreationTimeTo": "20250104120000",
        },
        {"ExtrinsicObject": 2},
    ),
    (
        "find-creation-low-precision",
        v.FIND_DOCUMENTS,
        lambda d: {
            "$XDSDocumentEntryPatientId": d.patient_id,
            "$XDSDocumentEntryStatus": [APPROVED, DEPRECATED],
            "$XDSDocumentEntryCreationTimeFrom": "202501",
            "$XDSDocumentEntryCreationTimeTo": "2026",
        },
        {"ExtrinsicObject": 6},
    ),
    (
        "find-class-code",
        v.FIND_DOCUMENTS,
        lambda d: {
            "$XDSDocumentEntryPatientId": d.patient_id,
            "$XDSDocumentEntryStatus": [APPROVED],
            "$XDSDocumentEntryClassCode": ["10^^1.2.250.1.213.1.1.4.1", "X^^1.2.3"],
        },
        {"ExtrinsicObject": 5},
    ),
    (
        "find-class-code-none",
        v.FIND_DOCUMENTS,
        lambda d: {
            "$XDSDocumentEntryPatientId": d.patient_id,
            "$XDSDocumentEntryStatus": [APPROVED],
            "$XDSDocumentEntryClassCode": ["X^^1.2.3"],
        },
        {},
    ),
    (
        "find-event-code",
        v.FIND_DOCUMENTS,
        lambda d: {
            "$XDSDocumentEntryPatientId": d.patient_id,
            "$XDSDocumentEntryStatus": [APPROVED],
            "$XDSDocumentEntryEventCodeList": ["E-4^^1.2.250.1.999.9.2"],
        },
        {"ExtrinsicObject": 1},
    ),
    (
        "find-author-like",
        v.FIND_DOCUMENTS,
        lambda d: {
            "$XDSDocumentEntryPatientId": d.patient_id,
            "$XDSDocumentEntryStatus": [APPROVED],
            "$XDSDocumentEntryAuthorPerson": ["%MEDECIN%"],
        },
        {"ExtrinsicObject": 5},
    ),
    (
        "find-author-none",
        v.FIND_DOCUMENTS,
        lambda d: {
            "$XDSDocumentEntryPatientId": d.patient_id,
            "$XDSDocumentEntryStatus": [APPROVED],
            "$XDSDocumentEntryAuthorPerson": ["%NOBODY%"],
        },
        {},
    ),
    (
        "find-on-demand-only",
        v.FIND_DOCUMENTS,
        lambda d: {
            "$XDSDocumentEntryPatientId": d.patient_id,
            "$XDSDocumentEntryStatus": [APPROVED],
            "$XDSDocumentEntryType": [v.ON_DEMAND_DOCUMENT],
        },
        {},
    ),
    (
        "find-submission-sets",
        v.FIND_SUBMISSION_SETS,
        lambda d: {
            "$XDSSubmissionSetPatientId": d.patient_id,
            "$XDSSubmissionSetStatus": [APPROVED],
        },
        {"SubmissionSet": 5},
    ),
    (
        "find-submission-sets-content-type",
        v.FIND_SUBMISSION_SETS,
        lambda d: {
            "$XDSSubmissionSetPatientId": d.patient_id,
            "$XDSSubmissionSetStatus": [APPROVED],
            "$XDSSubmissionSetContentType": ["04^^1.2.250.1.213.2.2"],
        },
        {"SubmissionSet": 5},
    ),
    (
        "find-folders",
        v.FIND_FOLDERS,
        lambda d: {"$XDSFolderPatientId": d.patient_id, "$XDSFolderStatus": [APPROVED]},
        {"Folder": 2},
    ),
    (
        "find-folders-code",
        v.FIND_FOLDERS,
        lambda d: {
            "$XDSFolderPatientId": d.patient_id,
            "$XDSFolderStatus": [APPROVED],
            "$XDSFolderCodeList": ["CARDIO^^1.2.250.1.999.9.1"],
        },
        {"Folder": 2},
    ),
    (
        "get-all",
        v.GET_ALL,
        lambda d: {
            "$patientId": d.patient_id,
            "$XDSDocumentEntryStatus": [APPROVED, DEPRECATED],
            "$XDSSubmissionSetStatus": [APPROVED],
            "$XDSFolderStatus": [APPROVED],
        },
        {"ExtrinsicObject": 6, "SubmissionSet": 5, "Folder": 2, "Association": 13},
    ),
    (
        "get-documents-two",
        v.GET_DOCUMENTS,
        lambda d: {"$XDSDocumentEntryEntryUUID": [d.uuids["DE1"], d.uuids["DE2"]]},
        {"ExtrinsicObject": 2},
    ),
    (
        "get-folders-two",
        v.GET_FOLDERS,
        lambda d: {"$XDSFolderEntryUUID": [d.uuids["F1"], d.uuids["F2"]]},
        {"Folder": 2},
    ),
    (
        "get-associations",
        v.GET_ASSOCIATIONS,
        lambda d: {"$uuid": [d.uuids["DE1"]]},
        {"Association": 1},
    ),
    (
        "get-documents-and-associations",
        v.GET_DOCUMENTS_AND_ASSOCIATIONS,
        lambda d: {"$XDSDocumentEntryEntryUUID": [d.uuids["DE1"]]},
        {"ExtrinsicObject": 1, "Association": 1},
    ),
    (
        "get-submission-sets-one-doc",
        v.GET_SUBMISSION_SETS,
        lambda d: {"$uuid": [d.uuids["DE1"]]},
        {"SubmissionSet": 1, "Association": 1},
    ),
    (
        "get-submission-sets-two-ss",
        v.GET_SUBMISSION_SETS,
        lambda d: {"$uuid": [d.uuids["DE1"], d.uuids["DE2"]]},
        {"SubmissionSet": 2, "Association": 2},
    ),
    (
        "get-submission-sets-one-ss",
        v.GET_SUBMISSION_SETS,
        lambda d: {"$uuid": [d.uuids["DE3"], d.uuids["DE4"]]},
        {"SubmissionSet": 1, "Association": 2},
    ),
    (
        "get-submission-sets-folder",
        v.GET_SUBMISSION_SETS,
        lambda d: {"$uuid": [d.uuids["F1"]]},
        {"SubmissionSet": 1, "Association": 1},
    ),
    (
        "get-ss-and-contents",
        v.GET_SUBMISSION_SET_AND_CONTENTS,
        lambda d: {"$XDSSubmissionSetUniqueId": d.ss_uids["SS3"]},
        {"SubmissionSet": 1, "ExtrinsicObject": 2, "Folder": 1, "Association": 5},
    ),
    (
        "get-ss-and-contents-format",
        v.GET_SUBMISSION_SET_AND_CONTENTS,
        lambda d: {
            "$XDSSubmissionSetUniqueId": d.ss_uids["SS3"],
            "$XDSDocumentEntryFormatCode": ["nope^^1.2.3"],
        },
        {"SubmissionSet": 1, "Folder": 1, "Association": 1},
    ),
    (
        "get-folder-and-contents",
        v.GET_FOLDER_AND_CONTENTS,
        lambda d: {"$XDSFolderEntryUUID": d.uuids["F1"]},
        {"Folder": 1, "ExtrinsicObject": 1, "Association": 1},
    ),
    (
        "get-folders-for-document",
        v.GET_FOLDERS_FOR_DOCUMENT,
        lambda d: {"$XDSDocumentEntryEntryUUID": d.uuids["DE3"]},
        {"Folder": 1},
    ),
    (
        "get-related-none",
        v.GET_RELATED_DOCUMENTS,
        lambda d: {"$XDSDocumentEntryEntryUUID": d.uuids["DE4"], "$AssociationTypes": [RPLC]},
        {},
    ),
    (
        "get-related-replacement",
        v.GET_RELATED_DOCUMENTS,
        lambda d: {
            "$XDSDocumentEntryUniqueId": d.docs["DE6"].unique_id,
            "$AssociationTypes": [RPLC, "urn:ihe:iti:2007:AssociationType:APND"],
        },
        {"ExtrinsicObject": 2, "Association": 1},
    ),
]


@pytest.mark.parametrize(
    ("query", "params", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_stored_query(data: DataSet, client_for, query: str, params, expected) -> None:
    client = client_for(data.patient_id)
    leaf = client.stored_query(query, params(data), return_type="LeafClass")
    assert leaf.status == "Success", leaf.errors
    assert counts(leaf.objects) == expected
    refs = client.stored_query(query, params(data), return_type="ObjectRef")
    assert refs.status == "Success", refs.errors
    assert sorted(o.get("id") for o in refs.objects) == sorted(o.get("id") for o in leaf.objects)
    assert all(etree.QName(o).localname == "ObjectRef" for o in refs.objects)


def test_replacement_deprecated_the_original(data: DataSet, client_for) -> None:
    found = client_for(data.patient_id).stored_query(
        v.GET_DOCUMENTS, {"$XDSDocumentEntryEntryUUID": [data.uuids["DE5"], data.uuids["DE6"]]}
    )
    status = {o.get("id"): o.get("status") for o in found.objects}
    assert status == {data.uuids["DE5"]: DEPRECATED, data.uuids["DE6"]: APPROVED}


def test_get_documents_of_two_patients_is_refused(
    data: DataSet, client_for, client: XdsClient, patient_id: str
) -> None:
    other = Doc(b"another patient's document")
    result = client.provide_and_register(
        submit_objects_request(patient_id, [other]), {"Document01": other.content}
    )
    assert result.status == "Success", result.errors
    uuid2 = _uuid_of(client, other.unique_id, v.GET_DOCUMENTS, "$XDSDocumentEntryUniqueId")
    both = client_for(data.patient_id).stored_query(
        v.GET_DOCUMENTS, {"$XDSDocumentEntryEntryUUID": [data.uuids["DE1"], uuid2]}
    )
    assert both.status == "Failure"
    assert both.error_codes == ["XDSResultNotSinglePatient"]


@pytest.mark.parametrize(
    ("query", "params", "code"),
    [
        (v.FIND_DOCUMENTS, {"$XDSDocumentEntryStatus": [APPROVED]}, "XDSStoredQueryMissingParam"),
        (
            v.FIND_SUBMISSION_SETS,
            {"$XDSSubmissionSetPatientId": "1^^^&1.2&ISO"},
            "XDSStoredQueryMissingParam",
        ),
        (v.GET_FOLDERS, {}, "XDSStoredQueryMissingParam"),
        (v.GET_ASSOCIATIONS, {}, "XDSStoredQueryMissingParam"),
        (
            v.GET_RELATED_DOCUMENTS,
            {"$XDSDocumentEntryUniqueId": "1.2.3"},
            "XDSStoredQueryMissingParam",
        ),
        (
            v.GET_SUBMISSION_SET_AND_CONTENTS,
            {"$XDSSubmissionSetUniqueId": ["1.2", "1.3"]},
            "XDSStoredQueryParamNumber",
        ),
        (
            v.FIND_DOCUMENTS,
            {
                "$XDSDocumentEntryPatientId": "1^^^&1.2&ISO",
                "$XDSDocumentEntryStatus": [APPROVED],
                "$XDSDocumentEntryClassCode": ["DEMO^^1.3.6", "a^^"],
            },
            "XDSRegistryError",
        ),
        (v.GET_DOCUMENTS, {"$XDSDocumentEntryEntryUUID": ["not-a-uuid"]}, "XDSRegistryError"),
    ],
)
def test_parameter_errors(client, query: str, params, code: str) -> None:
    result = client.stored_query(query, params)
    assert result.status == "Failure"
    assert code in result.error_codes
