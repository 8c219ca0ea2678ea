"""ebRIM -> model conversion and the database-free validation rules."""

from __future__ import annotations

import pytest
from lxml import etree

from dmp_xds.errors import ErrorCode, XdsError
from dmp_xds.metadata import vocabulary as v
from dmp_xds.metadata.datatypes import (
    dtm_key,
    is_dtm,
    is_uuid_urn,
    parse_patient_id,
    xcn_problem,
    xon_problem,
    xtn_problem,
)
from dmp_xds.metadata.ebrim import (
    adhoc_query_response,
    parse_submission,
    registry_response,
    set_slot,
    slot_values,
)
from dmp_xds.metadata.validation import validate_submission
from tests.fixtures.metadata import Doc, submit_objects_request

PID = "1234567890123^^^&1.2.250.1.213.1.4.10&ISO"


def _parse(request: etree._Element):
    sub, errors = parse_submission(request)
    return sub, errors + validate_submission(sub, registry_side=False)


def test_document_entry_fields_are_read() -> None:
    doc = Doc(b"hello", event_codes=[("E1", "1.2.3", "event")])
    sub, errors = _parse(submit_objects_request(PID, [doc]))
    assert errors == []
    [de] = sub.documents
    assert de.unique_id == doc.unique_id
    assert de.patient_id == PID
    assert de.mime_type == "text/plain"
    assert de.class_code and de.class_code.key == "10^^1.2.250.1.213.1.1.4.1"
    assert de.type_code and de.type_code.code == "11490-0"
    assert [c.code for c in de.confidentiality_codes] == ["N"]
    assert [c.key for c in de.event_codes] == ["E1^^1.2.3"]
    assert de.creation_time == "20260115093000"
    assert de.language_code == "fr-FR"
    assert de.source_patient_info[0].startswith("PID-5|")
    assert de.authors[0].person and de.authors[0].person.startswith("899900000011^MEDECIN")
    assert de.authors[0].specialties and de.authors[0].institutions
    ss = sub.submission_set
    assert ss is not None and ss.content_type_code and ss.content_type_code.code == "04"
    assert ss.source_id == "1.2.250.1.999.1.1.7898"


def test_symbolic_ids_become_uuids_everywhere() -> None:
    sub, errors = _parse(submit_objects_request(PID, [Doc(b"a"), Doc(b"b")]))
    assert errors == []
    assert set(sub.symbols) >= {"SubmissionSet01", "Document01", "Document02"}
    ids = {o.id for o in sub.objects()}
    assert all(is_uuid_urn(i) for i in ids)
    for assoc in sub.associations:
        assert assoc.source == sub.symbols["SubmissionSet01"]
        assert assoc.target in ids
    for de in sub.documents:
        for child in de.element.iter():
            for attr in ("id", "classifiedObject", "registryObject"):
                if child.get(attr):
                    assert is_uuid_urn(child.get(attr)), (attr, child.get(attr))


def test_top_level_submission_set_classification_moves_inside() -> None:
    sub, _ = _parse(submit_objects_request(PID, [Doc(b"a")]))
    ss = sub.submission_set
    assert ss is not None
    nodes = [c.get("classificationNode") for c in ss.element.iter("{*}Classification")]
    assert v.SUBMISSION_SET_NODE in nodes


def test_every_error_is_reported_at_once() -> None:
    doc = Doc(b"a", creation_time="2026-01-15", unique_id="not an oid")
    bad = Doc(b"b", patient_id="999^^^&1.2.250.1.213.1.4.10&ISO")
    _, errors = _parse(submit_objects_request(PID, [doc, bad]))
    codes = [(e.code, e.location) for e in errors]
    assert (
        ErrorCode.REPOSITORY_METADATA,
        "DocumentEntry Document01 / creationTime",
    ) in codes
    assert any(e.location.endswith("/ uniqueId") for e in errors)
    assert any(e.code is ErrorCode.PATIENT_ID_DOES_NOT_MATCH for e in errors)


def test_multi_valued_single_slot_is_an_error() -> None:
    doc = Doc(
        b"a",
        extra_slots='<Slot name="hash"><ValueList><Value>a</Value><Value>b</Value>'
        "</ValueList></Slot>",
    )
    _, errors = _parse(submit_objects_request(PID, [doc]))
    assert any("exactly one value" in e.message for e in errors)


def test_duplicate_unique_id_in_message() -> None:
    d1, d2 = Doc(b"a"), Doc(b"b")
    d2.unique_id = d1.unique_id
    _, errors = _parse(submit_objects_request(PID, [d1, d2]))
    assert any(e.code is ErrorCode.DUPLICATE_UNIQUE_ID_IN_MESSAGE for e in errors)


def test_registry_side_requires_hash_size_repository() -> None:
    req = submit_objects_request(PID, [Doc(b"a")])
    sub, errors = parse_submission(req)
    errors = validate_submission(sub, registry_side=True)
    missing = {e.location.rsplit(" / ", 1)[-1] for e in errors}
    assert {"hash", "size", "repositoryUniqueId"} <= missing
    assert all(e.code is ErrorCode.REGISTRY_METADATA for e in errors)


def test_set_slot_keeps_slots_first() -> None:
    sub, _ = _parse(submit_objects_request(PID, [Doc(b"a")]))
    el = sub.documents[0].element
    set_slot(el, "size", ["1"])
    tags = [etree.QName(c).localname for c in el]
    assert tags.index("Name") > max(i for i, t in enumerate(tags) if t == "Slot")
    assert slot_values(el)["size"] == ["1"]


def test_datatypes() -> None:
    assert parse_patient_id("123^^^&1.2.3&ISO^NH^^20100907").canonical == "123^^^&1.2.3&ISO"
    for bad in ("123", "^^^&1.2.3&ISO", "123^^^1.2.3", "123^^^&abc&ISO", "1^x^^&1.2&ISO"):
        try:
            parse_patient_id(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    assert is_dtm("2026") and is_dtm("20260115093000") and not is_dtm("20261315")
    assert not is_dtm("2026011509300") and not is_dtm("20260230x")
    assert dtm_key("2026") == "20260101000000" and dtm_key("202601151") != "x"


def test_response_builders() -> None:
    ok = registry_response()
    assert ok.get("status") == v.RESPONSE_SUCCESS and len(ok) == 0
    bad = registry_response([XdsError(ErrorCode.MISSING_DOCUMENT, "m", "loc")])
    assert bad.get("status") == v.RESPONSE_FAILURE
    err = bad.find(".//{*}RegistryError")
    assert err is not None and err.get("errorCode") == "XDSMissingDocument"
    assert err.get("location") == "loc" and err.get("codeContext") == "m"
    resp = adhoc_query_response()
    assert resp.find("{*}RegistryObjectList") is not None


@pytest.mark.parametrize(
    ("field", "doc_kwargs", "location"),
    [
        ("mimeType", {"mime_type": "not a mime"}, "mimeType"),
        ("authorPerson", {"author_person": "^^^^^^^^&1.2.3&XX"}, "authorPerson"),
        ("authorPerson-authority", {"author_person": "123^DOE^^^^^^^&bad&ISO"}, "authorPerson"),
        (
            "serviceStopTime",
            {"service_start": "20260102", "service_stop": "20260101"},
            "serviceStopTime",
        ),
        ("creationTime", {"creation_time": "20261301"}, "creationTime"),
        ("size", {"size": "-3"}, "size"),
        ("hash", {"hash": "xyz"}, "hash"),
    ],
)
def test_malformed_fields_are_named(field: str, doc_kwargs: dict, location: str) -> None:
    _, errors = _parse(submit_objects_request(PID, [Doc(b"a", **doc_kwargs)]))
    assert [e.location for e in errors] == [f"DocumentEntry Document01 / {location}"], field


def test_shaped_values() -> None:
    assert xcn_problem("123^DOE^JOHN^^^^^^&1.2.250.1.71.4.2.1&ISO") is None
    assert xcn_problem("^DOE") is None
    assert xcn_problem("^^JOHN") is not None
    assert xon_problem("CHU TEST^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1999000001") is None
    assert xon_problem("^^^^^&1.2&ISO") is not None
    assert xtn_problem("^^Internet^doc@example.org") is None
    assert xtn_problem("^^Internet^nobody") is not None
    assert xtn_problem("0123456789") is not None
