"""XdsClient: payload builders, response parsing, and the four transactions end to end against a
small in-test XDS actor (the real ``soap`` package behind ``wsgiref``; it keeps documents in a
dict, which is all the client needs to be exercised)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from lxml import etree

from dmp_xds.client.xds import (
    ACTION_PNR,
    ACTION_REGISTER,
    ACTION_RETRIEVE,
    ACTION_STORED_QUERY,
    RESPONSE_ACTIONS,
    SoapFaultError,
    XdsClient,
    adhoc_query_request,
    parse_registry_response,
    slot_values,
)
from dmp_xds.errors import FaultCode, SoapFault
from dmp_xds.namespaces import LCM, QUERY, RIM, RS, WSSE, XDSB, XOP
from dmp_xds.soap.envelope import (
    Limits,
    SoapRequest,
    fault_response,
    read_soap_request,
    soap_response,
)
from dmp_xds.soap.mtom import OutPart, xop_include

LIMITS = Limits(max_body_bytes=16 * 1024**2, max_xml_bytes=1024**2, max_attachments=20)
REPO = "1.2.250.1.999.1"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
PARTIAL = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"
ERROR = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"
X = f"{{{XDSB}}}"


def registry_response(status: str, *errors: tuple[str, str, str]) -> etree._Element:
    response = etree.Element(f"{{{RS}}}RegistryResponse", status=status, nsmap={"rs": RS})
    if errors:
        error_list = etree.SubElement(response, f"{{{RS}}}RegistryErrorList")
        for code, context, location in errors:
            etree.SubElement(
                error_list,
                f"{{{RS}}}RegistryError",
                errorCode=code,
                codeContext=context,
                location=location,
                severity=ERROR,
            )
    return response


class FakeXds:
    """Just enough of an XDS.b registry and repository to answer the client."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool
        self.documents: dict[str, bytes] = {}
        self.security_headers = 0
        self.inline_seen = 0

    def handle(self, request: SoapRequest) -> tuple[etree._Element, list[OutPart], bool]:
        action = request.addressing.action
        if request.header is not None:
            self.security_headers += len(request.header.findall(f"{{{WSSE}}}Security"))
            if request.header.find("{urn:test}Refuse") is not None:
                raise SoapFault(FaultCode.SENDER, "refused", subcode=(WSSE, "InvalidSecurity"))
        payload = request.payload
        if action == ACTION_PNR:
            assert payload.find(f"{{{LCM}}}SubmitObjectsRequest") is not None
            for document in payload.iterfind(X + "Document"):
                part = request.document_content(document)
                assert part is not None
                self.inline_seen += document.find(f"{{{XOP}}}Include") is None
                self.documents[document.get("id")] = part.read_bytes()
            return registry_response(SUCCESS), [], False
        if action == ACTION_REGISTER:
            failure = registry_response(
                FAILURE,
                ("XDSRegistryMetadataError", "creationTime is missing", "DocumentEntry Doc1"),
                ("XDSUnknownPatientId", "unknown patient", ""),
            )
            return failure, [], False
        if action == ACTION_STORED_QUERY:
            response = etree.Element(
                f"{{{QUERY}}}AdhocQueryResponse", status=SUCCESS, nsmap={"query": QUERY}
            )
            objects = etree.SubElement(response, f"{{{RIM}}}RegistryObjectList")
            query = payload.find(f"{{{RIM}}}AdhocQuery")
            for slot in query.iterfind(f"{{{RIM}}}Slot"):
                echo = etree.SubElement(objects, f"{{{RIM}}}ExtrinsicObject", id=slot.get("name"))
                echo.extend(slot.iterfind(f".//{{{RIM}}}Value"))
            etree.SubElement(objects, f"{{{RIM}}}ObjectRef", id=query.get("id"))
            return response, [], False
        if action == ACTION_RETRIEVE:
            response = etree.Element(X + "RetrieveDocumentSetResponse", nsmap={"xdsb": XDSB})
            found, parts, missing = [], [], []
            for n, item in enumerate(payload.iterfind(X + "DocumentRequest")):
                uid = item.findtext(X + "DocumentUniqueId")
                if uid not in self.documents:
                    missing.append(("XDSDocumentUniqueIdError", f"{uid} unknown", uid))
                    continue
                data = self.documents[uid]
                out = etree.Element(X + "DocumentResponse")
                etree.SubElement(out, X + "RepositoryUniqueId").text = REPO
                etree.SubElement(out, X + "DocumentUniqueId").text = uid
                etree.SubElement(out, X + "mimeType").text = "text/xml"
                xop_include(etree.SubElement(out, X + "Document"), f"d{n}@fake")
                parts.append(OutPart(f"d{n}@fake", "text/xml", len(data), lambda d=data: [d]))
                found.append(out)
            status = PARTIAL if missing and found else FAILURE if missing else SUCCESS
            response.append(registry_response(status, *missing))
            response.extend(found)
            return response, parts, True
        raise SoapFault(FaultCode.SENDER, f"unknown action {action}")

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = None
        try:
            request = read_soap_request(environ, self.spool, LIMITS)
            payload, parts, force = self.handle(request)
            response = soap_response(
                request.version,
                payload,
                action=RESPONSE_ACTIONS.get(request.addressing.action or ""),
                relates_to=request.addressing.message_id,
                attachments=parts,
                force_mtom=force,
            )
        except SoapFault as fault:
            response = fault_response(request.version if request else None, fault)
        finally:
            if request is not None:
                request.cleanup()
        start_response(response.status, response.headers)
        return response.body


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeXds:
    return FakeXds(tmp_path_factory.mktemp("spool"))


@pytest.fixture(scope="module")
def base_url(fake: FakeXds) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, fake, server_class=WSGIServer, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def submission() -> etree._Element:
    request = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    etree.SubElement(request, f"{{{RIM}}}RegistryObjectList")
    return request


def test_slot_value_encoding() -> None:
    assert slot_values("urn:x") == ["'urn:x'"]
    assert slot_values("O'Brien") == ["'O''Brien'"]
    assert slot_values(20240101) == ["20240101"]
    assert slot_values(["urn:a"]) == ["('urn:a')"]
    assert slot_values(("a", "b")) == ["('a','b')"]
    assert slot_values([["a", "b"], ["c"]]) == ["('a','b')", "('c')"]
    assert slot_values([1, 2]) == ["(1,2)"]
    with pytest.raises(TypeError):
        slot_values(["a", ["b"]])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        slot_values(True)


def test_adhoc_query_request_shape() -> None:
    request = adhoc_query_request(
        "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d",
        {"$XDSDocumentEntryPatientId": "123^^^&1.2.3&ISO"},
        "ObjectRef",
        home_community_id="urn:oid:1.2.3",
    )
    assert request.tag == f"{{{QUERY}}}AdhocQueryRequest"
    option = request.find(f"{{{QUERY}}}ResponseOption")
    assert option.get("returnType") == "ObjectRef"
    assert option.get("returnComposedObjects") == "true"
    query = request.find(f"{{{RIM}}}AdhocQuery")
    assert query.get("id") == "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
    assert query.get("home") == "urn:oid:1.2.3"
    slot = query.find(f"{{{RIM}}}Slot")
    assert slot.get("name") == "$XDSDocumentEntryPatientId"
    assert slot.findtext(f"{{{RIM}}}ValueList/{{{RIM}}}Value") == "'123^^^&1.2.3&ISO'"


def test_parse_registry_response_shapes() -> None:
    status, errors = parse_registry_response(registry_response(SUCCESS))
    assert (status, errors) == ("Success", [])
    status, errors = parse_registry_response(
        registry_response(PARTIAL, ("XDSRegistryError", "ctx", "loc"))
    )
    assert status == "PartialSuccess"
    assert errors[0].code == "XDSRegistryError"
    assert (errors[0].context, errors[0].location, errors[0].severity) == ("ctx", "loc", "Error")
    retrieve = etree.Element(X + "RetrieveDocumentSetResponse")
    retrieve.append(registry_response(FAILURE, ("XDSDocumentUniqueIdError", "c", "l")))
    assert parse_registry_response(retrieve)[0] == "Failure"
    adhoc = etree.Element(f"{{{QUERY}}}AdhocQueryResponse", status=SUCCESS)
    assert parse_registry_response(adhoc) == ("Success", [])


def test_provide_and_register_then_retrieve(base_url: str, fake: FakeXds, tmp_path: Path) -> None:
    cda = b"\r\n<ClinicalDocument xmlns='urn:hl7-org:v3'/>\r\n"
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4\r\n" + bytes(range(256)) * 400 + b"\r\n")
    calls = []

    def header_factory() -> list[etree._Element]:
        calls.append(1)
        return [etree.Element(f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})]

    client = XdsClient(base_url, header_factory=header_factory)
    result = client.provide_and_register(submission(), {"1.2.3.1": cda, "1.2.3.2": pdf})
    assert result.status == "Success" and result.errors == []
    assert result.reply.action == RESPONSE_ACTIONS[ACTION_PNR]
    assert fake.documents["1.2.3.1"] == cda
    assert fake.documents["1.2.3.2"] == pdf.read_bytes()
    assert fake.inline_seen == 0

    retrieved = client.retrieve([(REPO, "1.2.3.2"), (REPO, "1.2.3.1")])
    assert retrieved.status == "Success"
    assert retrieved.reply.action == RESPONSE_ACTIONS[ACTION_RETRIEVE]
    assert [d.document_uid for d in retrieved.documents] == ["1.2.3.2", "1.2.3.1"]
    assert retrieved.documents[0].content == pdf.read_bytes()
    assert retrieved.documents[1].content == cda
    assert retrieved.documents[1].mime_type == "text/xml"
    assert retrieved.documents[1].repository_uid == REPO
    assert len(calls) == 2 and fake.security_headers >= 2

    partial = client.retrieve([(REPO, "1.2.3.1"), (REPO, "9.9.9")])
    assert partial.status == "PartialSuccess"
    assert partial.error_codes == ["XDSDocumentUniqueIdError"]
    assert [d.document_uid for d in partial.documents] == ["1.2.3.1"]


def test_provide_and_register_inline(base_url: str, fake: FakeXds) -> None:
    result = XdsClient(base_url).provide_and_register(
        submission(), {"1.2.3.9": b"inline\r\n"}, mtom=False
    )
    assert result.status == "Success"
    assert fake.documents["1.2.3.9"] == b"inline\r\n"
    assert fake.inline_seen == 1


def test_register_reports_every_error(base_url: str) -> None:
    original = submission()
    result = XdsClient(base_url).register(original)
    assert original.getparent() is None and len(original) == 1  # caller's tree untouched
    assert result.status == "Failure"
    assert result.error_codes == ["XDSRegistryMetadataError", "XDSUnknownPatientId"]
    assert result.errors[0].location == "DocumentEntry Doc1"
    assert result.errors[0].context == "creationTime is missing"


def test_stored_query_sends_encoded_parameters(base_url: str) -> None:
    result = XdsClient(base_url).stored_query(
        "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d",
        {
            "$XDSDocumentEntryPatientId": "P1^^^&1.2.250.1.213.1.4.8&ISO",
            "$XDSDocumentEntryStatus": ["urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"],
            "$XDSDocumentEntryEventCodeList": [["a^^1.2", "b^^1.2"], ["c^^1.2"]],
        },
    )
    assert result.status == "Success"
    assert result.reply.action == RESPONSE_ACTIONS[ACTION_STORED_QUERY]
    by_name = {o.get("id"): [v.text for v in o] for o in result.objects}
    assert by_name["$XDSDocumentEntryPatientId"] == ["'P1^^^&1.2.250.1.213.1.4.8&ISO'"]
    assert by_name["$XDSDocumentEntryStatus"] == [
        "('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')"
    ]
    assert by_name["$XDSDocumentEntryEventCodeList"] == ["('a^^1.2','b^^1.2')", "('c^^1.2')"]
    assert result.objects[-1].tag == f"{{{RIM}}}ObjectRef"


def test_fault_is_raised(base_url: str) -> None:
    def refused_header() -> list[etree._Element]:
        return [etree.Element("{urn:test}Refuse")]

    client = XdsClient(base_url, header_factory=refused_header)
    with pytest.raises(SoapFaultError) as info:
        client.register(submission())
    assert info.value.fault.code == "Sender"
    assert info.value.fault.subcode == f"{{{WSSE}}}InvalidSecurity"
    assert info.value.reply.http_status == 400
