"""The producer's side of the CDA <-> metadata contract (cda/metadata.py), the sidecar
overrides and the ebRIM the client builds from them (client/submission.py), the import journal
(client/journal.py) and the operator's purge rule (policy/purge.py).

The expected metadata are the fixtures' own (tests/fixtures/clinical_documents.py derives them
independently, times converted with datetime), so the derivation is checked against another
reading of the same rules, and against the server's consistency check."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from dmp_xds.cda.consistency import compare
from dmp_xds.cda.header import NotWellFormed, read_header
from dmp_xds.cda.metadata import MAX_TEXT, NotCda, metadata_of
from dmp_xds.client.journal import Journal, load
from dmp_xds.client.submission import (
    SubmissionSetSpec,
    apply_overrides,
    missing_fields,
    parse_code,
    submit_objects_request,
)
from dmp_xds.metadata.ebrim import parse_submission
from dmp_xds.metadata.model import Code
from dmp_xds.metadata.validation import validate_submission
from dmp_xds.metadata.xsd import payload_errors
from dmp_xds.policy.purge import operator_may_purge
from tests.fixtures.clinical_documents import KINDS, cda_doc
from tests.fixtures.metadata import new_patient_id

SPEC = SubmissionSetSpec("1.2.250.1.999.1.2.1", Code("04", "1.2.250.1.213.2.2", "HDJ"))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_derived_metadata_are_the_fixtures(kind: str) -> None:
    pid = new_patient_id()
    doc = cda_doc(kind, pid)
    entry = metadata_of(io.BytesIO(doc.content))
    assert entry.patient_id == pid
    assert entry.unique_id == doc.unique_id
    assert (entry.type_code.code, entry.type_code.scheme) == doc.type_code[:2]
    assert (entry.class_code.code, entry.class_code.scheme) == doc.class_code[:2]
    assert (entry.format_code.code, entry.format_code.scheme) == doc.format_code[:2]
    assert [(c.code, c.scheme) for c in entry.confidentiality_codes] == [doc.confidentiality[:2]]
    assert entry.creation_time == doc.creation_time
    assert (entry.service_start_time, entry.service_stop_time) == (
        doc.service_start,
        doc.service_stop,
    )
    assert [a.person for a in entry.authors] == [doc.author_person]
    assert entry.language_code == "fr-FR" and entry.mime_type == "text/xml"
    assert entry.title


def test_derived_metadata_pass_the_servers_checks(tmp_path: Path) -> None:
    """What the client builds from every fixture is schema-valid, passes the metadata rules
    and agrees with the CDA header as the repository reads it."""
    pid = new_patient_id()
    entries = []
    for n, kind in enumerate(sorted(KINDS), start=1):
        path = tmp_path / f"{kind}.xml"
        path.write_bytes(cda_doc(kind, pid).content)
        entry = metadata_of(path)
        if kind == "doc-patient":
            assert set(missing_fields(entry)) == {
                "healthcareFacilityTypeCode is missing (the CDA has no componentOf/"
                "encompassingEncounter/location/healthCareFacility/code); set it in the "
                "sidecar file",
                "practiceSettingCode is missing (the CDA has no documentationOf/serviceEvent/"
                "performer/assignedEntity/representedOrganization/standardIndustryClassCode); "
                "set it in the sidecar file",
            }
            apply_overrides(
                entry,
                {
                    "healthcareFacilityTypeCode": "EXP_PATIENT^^1.2.250.1.213.1.1.4.6",
                    "practiceSettingCode": "PATIENT^^1.2.250.1.213.1.1.4.9",
                },
            )
        assert missing_fields(entry) == []
        entries.append((f"Document{n:04d}", entry, path))
    request = submit_objects_request(pid, [(d, e) for d, e, _ in entries], SPEC)
    assert payload_errors(request) == []
    submission, errors = parse_submission(request)
    assert errors == []
    assert validate_submission(submission, registry_side=False) == []
    for parsed, (_, _, path) in zip(submission.documents, entries, strict=True):
        header = read_header(path)
        assert header is not None
        assert compare(parsed, header) == []


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"<ClinicalDocument xmlns='urn:hl7-org:v3'><id root='1.2'/>", NotWellFormed),
        (
            b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
            b"<ClinicalDocument xmlns='urn:hl7-org:v3'>&b;</ClinicalDocument>",
            NotWellFormed,
        ),
        (b"<ClinicalDocument><id root='1.2'/></ClinicalDocument>", NotCda),  # no HL7 namespace
        (b"%PDF-1.4", NotWellFormed),
    ],
    ids=["truncated", "entity-bomb", "not-cda", "not-xml"],
)
def test_refuses_what_is_not_a_cda(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        metadata_of(io.BytesIO(data))


def test_texts_are_capped_and_missing_fields_noted() -> None:
    huge = "T" * 100_000
    entry = metadata_of(
        io.BytesIO(
            f"<ClinicalDocument xmlns='urn:hl7-org:v3'><title>{huge}</title>"
            "<code code='X1' codeSystem='1.2.3'/><effectiveTime value='2026'/>"
            "</ClinicalDocument>".encode()
        )
    )
    assert entry.title is not None and len(entry.title) == MAX_TEXT
    assert entry.creation_time == "2026"
    assert "no DMP classCode is known for typeCode X1" in entry.notes["classCode"]
    problems = " ".join(missing_fields(entry))
    for name in ("patientId", "uniqueId", "classCode", "formatCode", "confidentialityCode"):
        assert f"{name} is missing" in problems


def test_sidecar_values_and_their_mistakes() -> None:
    entry = metadata_of(io.BytesIO(cda_doc("cr-bio", new_patient_id()).content))
    problems = apply_overrides(
        entry,
        {
            "title": "Autre titre",
            "confidentialityCode": [
                "N^^2.16.840.1.113883.5.25",
                {"code": "MASQUE_PS", "codingScheme": "1.2.250.1.213.1.1.4.13"},
            ],
            "author": [{"authorPerson": "1^DOC^A", "authorRole": "Auteur"}],
            "creationTime": "yesterday",
            "typeCode": "11490-0",
            "hash": "00",
            "colour": "blue",
        },
    )
    assert entry.title == "Autre titre"
    assert [c.code for c in entry.confidentiality_codes] == ["N", "MASQUE_PS"]
    assert entry.authors[0].roles == ["Auteur"]
    assert problems == [
        "creationTime must be a UTC time YYYY[MM[DD[hh[mm[ss]]]]]",
        "typeCode '11490-0' is not 'code^^codingScheme'",
        "hash cannot be set: it is computed from the document",
        "unknown DocumentEntry attribute 'colour'",
    ]
    assert entry.creation_time == "20260115093000"  # a bad value leaves the derived one
    with pytest.raises(ValueError, match="unknown keys"):
        parse_code({"code": "a", "codingScheme": "1.2", "system": "x"})


def test_journal_survives_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.sending("r-1", [("a.xml", "1.2.1", "aa"), ("b.xml", "1.2.2", "bb")])
    journal.result("r-1", "Success", ["1.2.1", "1.2.2"])
    journal.sending("r-2", [("c.xml", "1.2.3", "cc")])
    journal.close()
    with path.open("a") as f:
        f.write('{"type": "result", "batch": "r-2", "acc')  # the process died here
    state = load(path)
    assert state.accepted == {"1.2.1": "a.xml", "1.2.2": "b.xml"}
    assert [(b.batch, b.unique_ids) for b in state.in_doubt] == [("r-2", {"1.2.3": "cc"})]
    again = Journal(path)
    with pytest.raises(ValueError, match="another import is using the journal"):
        Journal(path)
    again.result("r-2", "resolved", ["1.2.3"])
    again.close()
    assert load(path).in_doubt == [] and "1.2.3" in load(path).accepted
    assert json.loads(path.read_text().splitlines()[-1])["batch"] == "r-2"


@pytest.mark.parametrize(
    ("by", "listed", "allowed"),
    [
        ("810000000001", ("810000000001",), True),
        ("810000000002", ("810000000001",), False),
        ("810000000001", (), False),
        ("", ("810000000001",), False),
        ("810000000001 ", ("810000000001",), False),  # exact match only
    ],
)
def test_operator_purge_rule(by: str, listed: tuple[str, ...], allowed: bool) -> None:
    assert bool(operator_may_purge(by, listed)) is allowed
