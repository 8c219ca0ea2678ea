"""ITI-41 with CDA R2 documents: consistent ones are stored and come back byte for byte; any
disagreement between the CDA header and the DocumentEntry fails the whole submission with
XDSRepositoryMetadataError at the offending attribute, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from dmp_xds.client.xds import XdsClient
from tests.conftest import REPOSITORY_UNIQUE_ID
from tests.fixtures.clinical_documents import CONFIDENTIALITY, KINDS, LOINC, Person, cda_doc
from tests.fixtures.metadata import Doc, submit_objects_request


def submit(client: XdsClient, patient_id: str, docs: list[Doc]):
    request = submit_objects_request(patient_id, docs)
    return client.provide_and_register(request, {d.symbolic_id: d.content for d in docs})


def test_each_fixture_is_stored_and_retrieved_identical(client: XdsClient, patient_id: str) -> None:
    docs = [cda_doc(kind, patient_id) for kind in sorted(KINDS)]
    result = submit(client, patient_id, docs)
    assert result.status == "Success", result.errors
    got = client.retrieve([(REPOSITORY_UNIQUE_ID, d.unique_id) for d in docs])
    assert got.status == "Success", got.errors
    by_uid = {d.document_uid: d for d in got.documents}
    for doc in docs:
        assert by_uid[doc.unique_id].content == doc.content
        assert by_uid[doc.unique_id].mime_type == "text/xml"


OTHER_PATIENT = "1234567890123^^^&1.2.250.1.213.1.4.10&ISO"
PDF = ("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3", "PDF")
CASES: dict[str, tuple[str, dict[str, Any] | None, dict[str, Any] | None, str]] = {
    "patient": ("ldl-ses", {"patient_id": OTHER_PATIENT}, None, "patientId"),
    "uniqueId": ("cr-bio", {"document_root": "1.2.250.1.999.7.9.9"}, None, "uniqueId"),
    "typeCode": ("cr-consultation", {"type_code": ("34112-3", LOINC)}, None, "typeCode"),
    "confidentiality": (
        "cr-imagerie-pdf",
        {"confidentiality": ("V", CONFIDENTIALITY)},
        None,
        "confidentialityCode",
    ),
    "creationTime": ("doc-patient", None, {"creation_time": "20260115103000"}, "creationTime"),
    "language": ("cr-bio", {"language": "en-GB"}, None, "languageCode"),
    "author": (
        "ldl-ses",
        {"author": Person("810100022222", "VASSEUR", "Marc")},
        None,
        "authorPerson",
    ),
    "formatCode": ("cr-consultation", None, {"format_code": PDF}, "formatCode"),
}


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_mismatch_fails_and_changes_nothing(
    client: XdsClient, patient_id: str, case: tuple
) -> None:
    kind, cda, meta, attribute = case
    doc = cda_doc(kind, patient_id, cda=cda, meta=meta)
    result = submit(client, patient_id, [doc])
    assert result.status == "Failure"
    assert [(e.code, e.location) for e in result.errors] == [
        ("XDSRepositoryMetadataError", f"DocumentEntry Document01 / {attribute}")
    ]


@pytest.mark.usefixtures("unchanged")
def test_errors_of_every_document_together(client: XdsClient, patient_id: str) -> None:
    docs = [
        cda_doc("ldl-ses", patient_id),  # consistent: still not stored
        cda_doc("cr-bio", patient_id, cda={"language": "en-GB", "patient_id": OTHER_PATIENT}),
        Doc(
            b"<ClinicalDocument xmlns='urn:hl7-org:v3'><oops></ClinicalDocument>",
            mime_type="text/xml",
        ),
        cda_doc("doc-patient", patient_id, meta={"format_code": PDF}),
    ]
    result = submit(client, patient_id, docs)
    assert result.status == "Failure"
    assert {(e.code, e.location) for e in result.errors} == {
        ("XDSRepositoryMetadataError", "DocumentEntry Document02 / patientId"),
        ("XDSRepositoryMetadataError", "DocumentEntry Document02 / languageCode"),
        ("XDSRepositoryMetadataError", "DocumentEntry Document03 / mimeType"),
        ("XDSRepositoryMetadataError", "DocumentEntry Document04 / formatCode"),
    }


def test_xml_that_is_not_cda_and_other_types_are_stored_as_they_are(
    client: XdsClient, patient_id: str
) -> None:
    docs = [
        Doc(b"<Signature xmlns='http://www.w3.org/2000/09/xmldsig#'/>", mime_type="text/xml"),
        Doc(b"%PDF-1.4 <ClinicalDocument xmlns='urn:hl7-org:v3'>", mime_type="application/pdf"),
    ]
    result = submit(client, patient_id, docs)
    assert result.status == "Success", result.errors
    got = client.retrieve([(REPOSITORY_UNIQUE_ID, d.unique_id) for d in docs])
    assert sorted(d.content for d in got.documents) == sorted(d.content for d in docs)
