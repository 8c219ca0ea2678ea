"""CDA header against DocumentEntry: each kind of disagreement, and where it is reported.

Entries are parsed from our ebRIM fixtures exactly as the server parses a submission, and each
document is read from a file, as the server reads the spooled attachment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dmp_xds.cda.consistency import check_document, check_documents
from dmp_xds.metadata.ebrim import parse_submission
from dmp_xds.metadata.model import DocumentEntry
from tests.fixtures.clinical_documents import (
    CONFIDENTIALITY,
    IDNPS,
    KINDS,
    LOINC,
    Person,
    cda_doc,
)
from tests.fixtures.metadata import Doc, new_patient_id, submit_objects_request

PDF = ("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3", "PDF")
TEXT = ("urn:ihe:iti:xds-sd:text:2008", "1.3.6.1.4.1.19376.1.2.3", "Texte")


def entry(patient_id: str, doc: Doc) -> DocumentEntry:
    sub, errors = parse_submission(submit_objects_request(patient_id, [doc]))
    assert not errors, errors
    return sub.documents[0]


def errors_of(tmp_path: Path, patient_id: str, doc: Doc) -> list[tuple[str, str]]:
    path = tmp_path / "document.xml"
    path.write_bytes(doc.content)
    return [(e.code, e.location) for e in check_document(entry(patient_id, doc), path)]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_consistent_fixtures_pass(tmp_path: Path, kind: str) -> None:
    pid = new_patient_id()
    assert errors_of(tmp_path, pid, cda_doc(kind, pid)) == []


@dataclass
class Mismatch:
    kind: str
    cda: dict[str, Any] | None
    meta: dict[str, Any] | None
    attribute: str
    words: str  # what the message must say


OTHER_PATIENT = "1234567890123^^^&1.2.250.1.213.1.4.10&ISO"
MISMATCHES = {
    "patient id": Mismatch(
        "ldl-ses", {"patient_id": OTHER_PATIENT}, None, "patientId", "does not carry"
    ),
    "patient domain": Mismatch(
        "cr-bio",
        {"patient_id": "PLACEHOLDER^^^&1.2.250.1.213.1.4.8&ISO"},
        None,
        "patientId",
        "1.2.250.1.213.1.4.8",
    ),
    "uniqueId": Mismatch(
        "cr-bio", {"document_root": "1.2.250.1.999.7.9.9"}, None, "uniqueId", "1.2.250.1.999.7.9.9"
    ),
    "typeCode code": Mismatch(
        "ldl-ses", {"type_code": ("34112-3", LOINC)}, None, "typeCode", "34112-3"
    ),
    "typeCode system": Mismatch(
        "cr-consultation",
        {"type_code": ("11488-4", "1.2.250.1.213.1.1.4.12")},
        None,
        "typeCode",
        "1.2.250.1.213.1.1.4.12",
    ),
    "confidentiality": Mismatch(
        "cr-bio", {"confidentiality": ("R", CONFIDENTIALITY)}, None, "confidentialityCode", "R"
    ),
    "confidentiality in metadata": Mismatch(
        "cr-bio",
        None,
        {"confidentiality": ("V", CONFIDENTIALITY, "Très restreint")},
        "confidentialityCode",
        "V",
    ),
    "creationTime not converted to UTC": Mismatch(
        "ldl-ses", None, {"creation_time": "20260115103000"}, "creationTime", "differs"
    ),
    "effectiveTime one hour later": Mismatch(
        "cr-consultation",
        {"effective_time": "20260115113000+0100"},
        None,
        "creationTime",
        "effectiveTime",
    ),
    "effectiveTime unusable": Mismatch(
        "cr-consultation", {"effective_time": "15/01/2026"}, None, "creationTime", "unusable"
    ),
    "languageCode": Mismatch("doc-patient", {"language": "en-US"}, None, "languageCode", "en-US"),
    "author": Mismatch(
        "cr-imagerie-pdf",
        {"author": Person("810100022222", "VASSEUR", "Marc")},
        None,
        "authorPerson",
        "not an author",
    ),
    "author domain": Mismatch(
        "ldl-ses",
        {"author": Person("810100012345", "AUBRAC", "Hélène", root="1.2.250.1.999.9")},
        None,
        "authorPerson",
        IDNPS,
    ),
    "patient credited instead of the doctor": Mismatch(
        "cr-bio",
        None,
        {"author_person": "7000000000001^DA SILVA^Joaquim^^^^^^&1.2.250.1.213.1.4.10&ISO^D^^^NH"},
        "authorPerson",
        "not an author",
    ),
    "PDF body, text formatCode": Mismatch(
        "cr-imagerie-pdf", None, {"format_code": TEXT}, "formatCode", "application/pdf"
    ),
    "text body, PDF formatCode": Mismatch(
        "doc-patient", None, {"format_code": PDF}, "formatCode", "text/plain"
    ),
    "structured body, PDF formatCode": Mismatch(
        "cr-bio", None, {"format_code": PDF}, "formatCode", "structuredBody"
    ),
}


@pytest.mark.parametrize("case", MISMATCHES.values(), ids=MISMATCHES.keys())
def test_each_mismatch_is_located(tmp_path: Path, case: Mismatch) -> None:
    pid = new_patient_id()
    cda = dict(case.cda or {})
    if "patient_id" in cda and cda["patient_id"].startswith("PLACEHOLDER"):
        cda["patient_id"] = pid.split("^")[0] + cda["patient_id"].removeprefix("PLACEHOLDER")
    doc = cda_doc(case.kind, pid, cda=cda, meta=case.meta)
    path = tmp_path / "document.xml"
    path.write_bytes(doc.content)
    errors = check_document(entry(pid, doc), path)
    assert [(e.code, e.location) for e in errors] == [
        ("XDSRepositoryMetadataError", f"DocumentEntry Document01 / {case.attribute}")
    ]
    assert case.words in errors[0].message


def test_messages_never_carry_people_identifiers(tmp_path: Path) -> None:
    pid = new_patient_id()
    doc = cda_doc(
        "doc-patient", pid, cda={"patient_id": OTHER_PATIENT, "author": Person("555", "X", "Y")}
    )
    path = tmp_path / "document.xml"
    path.write_bytes(doc.content)
    errors = check_document(entry(pid, doc), path)
    assert {e.location.rsplit(" / ", 1)[1] for e in errors} == {"patientId", "authorPerson"}
    for error in errors:
        for secret in (pid.split("^")[0], "1234567890123", "555"):
            assert secret not in error.message


def test_every_mismatch_of_a_document_at_once(tmp_path: Path) -> None:
    pid = new_patient_id()
    doc = cda_doc(
        "ldl-ses",
        pid,
        cda={
            "patient_id": OTHER_PATIENT,
            "document_root": "1.2.250.1.999.7.9.8",
            "type_code": ("34112-3", LOINC),
            "confidentiality": ("R", CONFIDENTIALITY),
            "effective_time": "20250101000000+0100",
            "language": "de-DE",
            "author": Person("810100022222", "VASSEUR", "Marc"),
        },
        meta={"format_code": PDF},
    )
    attributes = [location.rsplit(" / ", 1)[1] for _, location in errors_of(tmp_path, pid, doc)]
    assert attributes == [
        "patientId",
        "uniqueId",
        "typeCode",
        "confidentialityCode",
        "creationTime",
        "languageCode",
        "authorPerson",
        "formatCode",
    ]


def test_entry_may_list_fewer_authors_and_extra_confidentiality_codes(tmp_path: Path) -> None:
    """The CDA header has one HL7 confidentiality code; the DMP adds its own beside it."""
    pid = new_patient_id()
    extra = (
        '<Classification classificationScheme="urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"'
        ' classifiedObject="Document01" id="conf2" nodeRepresentation="INVISIBLE_PATIENT">'
        '<Slot name="codingScheme"><ValueList><Value>1.2.250.1.213.1.1.4.13</Value></ValueList>'
        "</Slot></Classification>"
    )
    doc = cda_doc("ldl-ses", pid, meta={"confidentiality": ("N", CONFIDENTIALITY, "Normal")})
    doc.extra_slots = extra
    de = entry(pid, doc)
    assert len(de.confidentiality_codes) == 2
    path = tmp_path / "document.xml"
    path.write_bytes(doc.content)
    assert check_document(de, path) == []


def test_unique_id_with_extension(tmp_path: Path) -> None:
    pid = new_patient_id()
    doc = cda_doc("cr-bio", pid)
    doc.content = doc.content.replace(
        f'<id root="{doc.unique_id}"/>'.encode(),
        f'<id root="{doc.unique_id}" extension="R7"/>'.encode(),
    )
    assert errors_of(tmp_path, pid, doc) == [
        ("XDSRepositoryMetadataError", "DocumentEntry Document01 / uniqueId")
    ]
    doc.unique_id += "^R7"
    assert errors_of(tmp_path, pid, doc) == []


def test_language_tags_compare_case_insensitively(tmp_path: Path) -> None:
    pid = new_patient_id()
    assert errors_of(tmp_path, pid, cda_doc("cr-bio", pid, cda={"language": "FR-fr"})) == []


@pytest.mark.parametrize(
    ("content", "outcome"),
    [
        (b"<ClinicalDocument xmlns='urn:hl7-org:v3'><id root='1'>", "mimeType"),
        (b"<!DOCTYPE x><x/>", "mimeType"),
        (b"<Signature xmlns='http://www.w3.org/2000/09/xmldsig#'/>", None),  # not CDA: stored
        (b"<ClinicalDocument/>", None),  # no HL7 namespace: not CDA
    ],
)
def test_xml_that_is_not_a_cda_document(
    tmp_path: Path, content: bytes, outcome: str | None
) -> None:
    pid = new_patient_id()
    errors = errors_of(tmp_path, pid, Doc(content, mime_type="text/xml"))
    expected = (
        []
        if outcome is None
        else [("XDSRepositoryMetadataError", f"DocumentEntry Document01 / {outcome}")]
    )
    assert errors == expected


def test_only_xml_documents_are_read(tmp_path: Path) -> None:
    pid = new_patient_id()
    broken = b"<ClinicalDocument xmlns='urn:hl7-org:v3'><oops>"
    docs = [
        Doc(broken, mime_type="application/pdf"),
        Doc(broken, mime_type="text/plain"),
        Doc(broken, mime_type="application/xml"),
        Doc(broken, mime_type="text/xml; charset=UTF-8"),
    ]
    sub, errors = parse_submission(submit_objects_request(pid, docs))
    assert not errors

    @dataclass
    class Part:
        path: Path

    contents = {}
    for n, de in enumerate(sub.documents):
        path = tmp_path / f"{n}.bin"
        path.write_bytes(broken)
        contents[de.id] = Part(path)
    found = check_documents(sub.documents, contents)
    assert [e.location for e in found] == [
        "DocumentEntry Document03 / mimeType",
        "DocumentEntry Document04 / mimeType",
    ]
