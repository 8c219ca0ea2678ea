"""The ATNA audit messages (audit/atna.py) and their syslog framing (audit/export.py), without a
server: every message validates against the DICOM schema (schemas/dicom-audit-message.rng)
and carries the codes of its transaction."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import re

import pytest
from lxml import etree

from dmp_xds.audit.atna import Source, audit_message, request_facts
from dmp_xds.audit.export import Collector, syslog_frame
from dmp_xds.audit.trail import AuditEvent
from dmp_xds.client.xds import adhoc_query_request, retrieve_request
from dmp_xds.config import Settings
from dmp_xds.metadata import vocabulary as v
from dmp_xds.resources import resource_dir
from tests.fixtures.metadata import Doc, submit_objects_request
from tests.fixtures.principals import principal

SOURCE = Source("dmp-xds-test", "xds.example.fr", repository_unique_id="1.2.250.1.999.1.1.1")
WHEN = dt.datetime(2026, 3, 1, 12, 30, 5, 123000, tzinfo=dt.UTC)
REQUEST_ID = "0b5e7a2c-4f1e-4a53-9a6b-9f3e1f0c2d11"


@pytest.fixture(scope="module")
def schema() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(resource_dir("schemas") / "dicom-audit-message.rng")))


def event(action: str | None, outcome: str = "success", **kw: object) -> AuditEvent:
    kw.setdefault("principal", principal(mode="INDIRECTE_RENFORCEE"))
    made = AuditEvent(REQUEST_ID, action, outcome, remote_addr="192.0.2.7", **kw)  # type: ignore[arg-type]
    made.occurred_at = WHEN
    return made


def valid(schema: etree.RelaxNG, message: etree._Element) -> etree._Element:
    # Through bytes, as a collector reads it.
    parsed = etree.fromstring(etree.tostring(message, xml_declaration=True, encoding="UTF-8"))
    assert schema.validate(parsed), schema.error_log
    return parsed


def codes(message: etree._Element, path: str) -> list[tuple[str, str]]:
    return [(e.get("csd-code"), e.get("codeSystemName")) for e in message.iterfind(path)]


def objects(message: etree._Element) -> list[tuple[str, str, str, str]]:
    return [
        (
            o.get("ParticipantObjectTypeCode"),
            o.get("ParticipantObjectTypeCodeRole"),
            o.find("ParticipantObjectIDTypeCode").get("csd-code"),
            o.get("ParticipantObjectID"),
        )
        for o in message.iterfind("ParticipantObjectIdentification")
    ]


PATIENT = "1^^^&1.2.250.1.213.1.4.10&ISO"


def test_provide_and_register(schema) -> None:
    doc = Doc(b"x")
    payload = submit_objects_request(PATIENT, [doc], ss_unique_id="1.2.3.4.5.6")
    e = event(v.ACTION_PNR, objects=["urn:uuid:1", "urn:uuid:2"])
    m = valid(schema, audit_message(e, SOURCE, request_facts(e, payload)))
    ident = m.find("EventIdentification")
    assert ident.get("EventActionCode") == "C"
    assert ident.get("EventOutcomeIndicator") == "0"
    assert ident.get("EventDateTime") == "2026-03-01T12:30:05.123Z"
    assert codes(m, "EventIdentification/EventID") == [("110107", "DCM")]
    assert codes(m, "EventIdentification/EventTypeCode") == [("ITI-41", "IHE Transactions")]
    assert ident.find("PurposeOfUse") is None
    assert objects(m) == [
        ("1", "1", "2", PATIENT),
        ("2", "20", "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd", "1.2.3.4.5.6"),
    ]
    client, human, server = m.iterfind("ActiveParticipant")
    assert codes(client, "RoleIDCode") == [("110153", "DCM")]
    assert client.get("NetworkAccessPointID") == "192.0.2.7"
    assert client.get("NetworkAccessPointTypeCode") == "2"
    assert client.get("UserIsRequestor") == "false"
    assert human.get("UserID") == "810000000001" and human.get("UserIsRequestor") == "true"
    assert human.get("AlternativeUserID") == "1999000001"  # the structure
    assert codes(human, "RoleIDCode") == [("10", "1.2.250.1.71.1.2.7")]
    assert codes(server, "RoleIDCode") == [("110152", "DCM")]
    assert m.find("AuditSourceIdentification").get("AuditSourceID") == "dmp-xds-test"


def test_stored_query_carries_the_query(schema) -> None:
    payload = adhoc_query_request(v.FIND_DOCUMENTS, {"$XDSDocumentEntryPatientId": PATIENT})
    e = event(v.ACTION_STORED_QUERY, objects=["urn:uuid:found"])
    m = valid(schema, audit_message(e, SOURCE, request_facts(e, payload)))
    assert codes(m, "EventIdentification/EventID") == [("110112", "DCM")]
    assert m.find("EventIdentification").get("EventActionCode") == "E"
    patient, query = m.iterfind("ParticipantObjectIdentification")
    assert patient.get("ParticipantObjectTypeCodeRole") == "1"
    assert (query.get("ParticipantObjectTypeCodeRole"), query.get("ParticipantObjectID")) == (
        "24",
        v.FIND_DOCUMENTS,
    )
    sent = etree.fromstring(base64.b64decode(query.findtext("ParticipantObjectQuery")))
    assert sent.tag.endswith("AdhocQueryRequest")
    detail = query.find("ParticipantObjectDetail")
    assert detail.get("type") == "QueryEncoding"
    assert base64.b64decode(detail.get("value")) == b"UTF-8"


def test_retrieve_names_each_document_and_its_repository(schema) -> None:
    payload = retrieve_request([("1.2.3.9", "1.2.3.1"), ("1.2.3.9", "1.2.3.2")])
    e = event(v.ACTION_RETRIEVE, objects=["1.2.3.1"])  # the one actually returned
    m = valid(schema, audit_message(e, SOURCE, request_facts(e, payload)))
    assert codes(m, "EventIdentification/EventID") == [("110106", "DCM")]
    assert m.find("EventIdentification").get("EventActionCode") == "R"
    # Data leaves us: the client is the Destination, this server the Source.
    client, _human, server = m.iterfind("ActiveParticipant")
    assert codes(client, "RoleIDCode") == [("110152", "DCM")]
    assert codes(server, "RoleIDCode") == [("110153", "DCM")]
    [document] = [o for o in m.iterfind("ParticipantObjectIdentification")][1:]
    assert document.get("ParticipantObjectID") == "1.2.3.1"
    assert document.get("ParticipantObjectTypeCodeRole") == "3"
    detail = document.find("ParticipantObjectDetail")
    assert detail.get("type") == "Repository Unique Id"
    assert base64.b64decode(detail.get("value")) == b"1.2.3.9"


@pytest.mark.parametrize(
    ("action", "event_id", "action_code", "type_code"),
    [
        (v.ACTION_REGISTER, "110107", "C", "ITI-42"),
        (v.ACTION_UPDATE, "110107", "U", "ITI-57"),
        (v.ACTION_DELETE, "110110", "D", "ITI-62"),
        ("urn:hl7-org:v3:PRPA_IN201311UV02", "110110", "C", "DMP-TD1.1"),
        ("urn:hl7-org:v3:PRPA_IN201307UV02", "110110", "R", "DMP-TD0.2/TD1.3a"),
        ("urn:si-dmp-habilitations:HabilitationsEndPoint:setAuthorization", "110110", "U", None),
        ("urn:hl7-org:v3:PRPA_IN201305UV02", "110112", "E", "ITI-47"),
        ("urn:dmp-xds:traces:1:listTraces", "110101", "R", "DMP-TRACES"),
        ("urn:dmp-xds:cli:trail", "110101", "R", "TRAIL-EXPORT"),
    ],
)
def test_codes_per_transaction(schema, action, event_id, action_code, type_code) -> None:
    m = valid(schema, audit_message(event(action, objects=["x"]), SOURCE))
    ident = m.find("EventIdentification")
    assert ident.find("EventID").get("csd-code") == event_id
    assert ident.get("EventActionCode") == action_code
    if type_code:
        assert ident.find("EventTypeCode").get("csd-code") == type_code


def test_emergency_access_is_flagged_with_its_motive(schema) -> None:
    who = dataclasses.replace(
        principal(access="bris_de_glace", mode="DIRECTE"), access_motive="arrêt cardiaque"
    )
    m = valid(schema, audit_message(event(v.ACTION_STORED_QUERY, principal=who), SOURCE))
    ident = m.find("EventIdentification")
    assert ("110127", "DCM") in codes(m, "EventIdentification/EventTypeCode")
    purpose = ident.find("PurposeOfUse")
    assert (purpose.get("csd-code"), purpose.get("codeSystemName")) == (
        "bris_de_glace",
        "1.2.250.1.213.1.1.4.248",
    )
    patient = m.find("ParticipantObjectIdentification")
    detail = patient.find("ParticipantObjectDetail")
    assert detail.get("type") == "AccessMotive"
    assert base64.b64decode(detail.get("value")).decode() == "arrêt cardiaque"


def test_failures_refusals_and_faults(schema) -> None:
    failed = event(v.ACTION_PNR, "failure", error_codes=["XDSUnknownPatientId"])
    m = valid(schema, audit_message(failed, SOURCE))
    assert m.find("EventIdentification").get("EventOutcomeIndicator") == "4"
    assert m.findtext("EventIdentification/EventOutcomeDescription") == "XDSUnknownPatientId"
    assert len(objects(m)) == 1  # the patient only: nothing was registered

    refused = AuditEvent(
        REQUEST_ID, v.ACTION_STORED_QUERY, "refused", remote_addr="192.0.2.9", detail="bad sig"
    )
    m = valid(schema, audit_message(refused, SOURCE))
    assert codes(m, "EventIdentification/EventID") == [("110114", "DCM")]
    assert codes(m, "EventIdentification/EventTypeCode") == [
        ("110122", "DCM"),
        ("ITI-18", "IHE Transactions"),
    ]
    assert m.find("EventIdentification").get("EventOutcomeIndicator") == "8"
    client = m.find("ActiveParticipant")
    assert client.get("UserID") == "192.0.2.9" and client.get("UserIsRequestor") == "true"
    assert objects(m) == []

    fault = AuditEvent(REQUEST_ID, None, "fault", detail="malformed XML")
    m = valid(schema, audit_message(fault, SOURCE))
    assert codes(m, "EventIdentification/EventID") == [("110113", "DCM")]


def test_syslog_frame_is_rfc5424_with_octet_counting() -> None:
    xml = etree.tostring(
        audit_message(event(v.ACTION_STORED_QUERY), SOURCE), xml_declaration=True, encoding="UTF-8"
    )
    frame = syslog_frame(
        xml, host="xds.example.fr", when="2026-03-01T12:30:05.123Z", process_id="42"
    )
    length, _, record = frame.partition(b" ")
    assert int(length) == len(record)
    header = re.match(
        rb"<85>1 2026-03-01T12:30:05.123Z xds\.example\.fr dmp-xds 42 IHE\+RFC-3881 - \xef\xbb\xbf",
        record,
    )
    assert header is not None
    assert record[header.end() :] == xml


@pytest.mark.parametrize(
    "url",
    ["udp://h:514", "tls://h", "tcp://:6514", "h:6514", "tls://h:notaport", "https://h:443"],
)
def test_collector_urls_are_checked(url: str, monkeypatch) -> None:
    with pytest.raises(ValueError):
        Collector.parse(url)
    monkeypatch.setenv("DMP_XDS_ATNA_URL", url)
    with pytest.raises(ValueError, match="DMP_XDS_ATNA_URL"):
        Settings.from_env()


def test_collector_url_accepted(monkeypatch) -> None:
    assert Collector.parse("tls://atna.example.fr:6514") == Collector(
        "tls", "atna.example.fr", 6514
    )
    monkeypatch.setenv("DMP_XDS_ATNA_URL", "tcp://127.0.0.1:5514")
    monkeypatch.setenv("DMP_XDS_ATNA_QUEUE_SIZE", "7")
    settings = Settings.from_env()
    assert (settings.atna_url, settings.atna_queue_size) == ("tcp://127.0.0.1:5514", 7)
    monkeypatch.delenv("DMP_XDS_ATNA_URL")
    assert Settings.from_env().atna_url is None
