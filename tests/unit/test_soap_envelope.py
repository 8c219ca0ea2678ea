"""SOAP request reading (versions, WS-Addressing, mustUnderstand, limits) and response writing."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from dmp_xds.errors import FaultCode, SoapFault
from dmp_xds.namespaces import SOAP11, SOAP12, WSA, WSSE, XOP
from dmp_xds.soap.envelope import (
    WSA_FAULT_ACTION,
    Limits,
    MustUnderstandFault,
    SoapVersion,
    fault_response,
    read_soap_request,
    soap_response,
    splice_point,
)
from dmp_xds.soap.mtom import OutPart, file_chunks, mtom_body, read_multipart, xop_include

LIMITS = Limits(max_body_bytes=1024**2, max_xml_bytes=64 * 1024, max_attachments=5)
NS = {"s12": SOAP12, "s11": SOAP11, "wsa": WSA, "xop": XOP}


def envelope(
    body: str = '<t:Ping xmlns:t="urn:test"/>', header: str | None = "", ns: str = SOAP12
) -> bytes:
    head = "" if header is None else f"<e:Header>{header}</e:Header>"
    return (
        f'<e:Envelope xmlns:e="{ns}" xmlns:wsa="{WSA}">{head}<e:Body>{body}</e:Body></e:Envelope>'
    ).encode()


def environ(
    data: bytes,
    content_type: str = "application/soap+xml; charset=utf-8",
    *,
    length: bool = True,
    terminated: bool = False,
    method: str = "POST",
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": content_type,
        "wsgi.input": io.BytesIO(data),
    }
    if length:
        env["CONTENT_LENGTH"] = str(len(data))
    if terminated:
        env["wsgi.input_terminated"] = True
    return env


def read(data: bytes, tmp_path: Path, **kw: Any):
    return read_soap_request(environ(data, **kw), tmp_path, LIMITS)


def fault_of(data: bytes, tmp_path: Path, **kw: Any) -> SoapFault:
    with pytest.raises(SoapFault) as info:
        read(data, tmp_path, **kw)
    assert list(tmp_path.iterdir()) == []
    return info.value


WSA_HEADERS = (
    '<wsa:Action e:mustUnderstand="true">urn:ihe:iti:2007:RegistryStoredQuery</wsa:Action>'
    "<wsa:MessageID>urn:uuid:1234</wsa:MessageID>"
    "<wsa:To> http://server/xds/registry </wsa:To>"
    "<wsa:ReplyTo><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address>"
    "</wsa:ReplyTo>"
)


def test_soap12_request_with_addressing(tmp_path: Path) -> None:
    request = read(envelope(header=WSA_HEADERS), tmp_path)
    assert request.version is SoapVersion.SOAP12
    assert request.payload.tag == "{urn:test}Ping"
    assert request.header is not None
    assert request.addressing.action == "urn:ihe:iti:2007:RegistryStoredQuery"
    assert request.addressing.message_id == "urn:uuid:1234"
    assert request.addressing.to == "http://server/xds/registry"
    assert request.addressing.reply_to == "http://www.w3.org/2005/08/addressing/anonymous"
    assert request.attachments == {}


def test_soap11_request(tmp_path: Path) -> None:
    headers = '<wsa:Action e:mustUnderstand="1">urn:a</wsa:Action>'
    request = read(envelope(header=headers, ns=SOAP11), tmp_path, content_type="text/xml")
    assert request.version is SoapVersion.SOAP11
    assert request.version.media_type == "text/xml"
    assert request.addressing.action == "urn:a"


def test_no_header_means_empty_addressing(tmp_path: Path) -> None:
    request = read(envelope(header=None), tmp_path)
    assert request.header is None
    assert request.addressing.action is None and request.addressing.message_id is None


def test_must_understand_unknown_header_faults(tmp_path: Path) -> None:
    header = '<x:Custom xmlns:x="urn:x" e:mustUnderstand="true"/>'
    fault = fault_of(envelope(header=header), tmp_path)
    assert isinstance(fault, MustUnderstandFault)
    assert fault.code is FaultCode.MUST_UNDERSTAND
    assert fault.not_understood == [("urn:x", "Custom")]
    header11 = '<x:Custom xmlns:x="urn:x" e:mustUnderstand="1"/>'
    assert (
        fault_of(envelope(header=header11, ns=SOAP11), tmp_path).code is FaultCode.MUST_UNDERSTAND
    )


def test_must_understand_accepted_or_not_ours(tmp_path: Path) -> None:
    headers = (
        f'<wsse:Security xmlns:wsse="{WSSE}" e:mustUnderstand="true"/>'
        '<x:A xmlns:x="urn:x" e:mustUnderstand="false"/>'
        '<x:B xmlns:x="urn:x"/>'
        '<x:C xmlns:x="urn:x" e:mustUnderstand="true" '
        'e:role="http://www.w3.org/2003/05/soap-envelope/role/none"/>'
        '<x:D xmlns:x="urn:x" e:mustUnderstand="true" e:role="urn:some:intermediary"/>'
        # an attribute in another namespace is not the SOAP one
        '<x:E xmlns:x="urn:x" x:mustUnderstand="true"/>'
    )
    assert read(envelope(header=headers), tmp_path).payload.tag == "{urn:test}Ping"


def test_duplicate_addressing_header_faults(tmp_path: Path) -> None:
    header = "<wsa:Action>urn:a</wsa:Action><wsa:Action>urn:b</wsa:Action>"
    assert fault_of(envelope(header=header), tmp_path).subcode == (WSA, "InvalidAddressingHeader")


def test_envelope_structure_faults(tmp_path: Path) -> None:
    assert fault_of(envelope(ns="urn:other"), tmp_path).code is FaultCode.VERSION_MISMATCH
    assert fault_of(b"<NotAnEnvelope/>", tmp_path).code is FaultCode.SENDER
    assert "empty" in fault_of(envelope(body=""), tmp_path).reason
    no_body = f'<e:Envelope xmlns:e="{SOAP12}"><e:Header/></e:Envelope>'.encode()
    assert "without a Body" in fault_of(no_body, tmp_path).reason


@pytest.mark.parametrize(
    "data",
    [
        b'<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + envelope(body="<t>&x;</t>"),
        b"<?pi x?>" + envelope(),
        b"<e:Envelope",
    ],
)
def test_hostile_xml_is_a_sender_fault(data: bytes, tmp_path: Path) -> None:
    assert fault_of(data, tmp_path).code is FaultCode.SENDER


def test_http_level_faults(tmp_path: Path) -> None:
    assert fault_of(envelope(), tmp_path, method="GET").http_status == 405
    assert fault_of(envelope(), tmp_path, content_type="text/plain").http_status == 415
    assert fault_of(envelope(), tmp_path, length=False).http_status == 411
    big = envelope(body="<t>" + "x" * 70_000 + "</t>")
    assert fault_of(big, tmp_path).http_status == 413
    assert fault_of(big, tmp_path, length=False, terminated=True).http_status == 413
    env = environ(envelope())
    env["CONTENT_LENGTH"] = "12abc"
    with pytest.raises(SoapFault):
        read_soap_request(env, tmp_path, LIMITS)


def test_chunked_request_read_to_eof(tmp_path: Path) -> None:
    request = read(envelope(), tmp_path, length=False, terminated=True)
    assert request.payload.tag == "{urn:test}Ping"


def mtom_request(documents: dict[str, bytes], body: str) -> tuple[bytes, str]:
    parts = [OutPart(cid, "text/xml", len(d), lambda d=d: [d]) for cid, d in documents.items()]
    content_type, _, chunks = mtom_body(envelope(body=body), "application/soap+xml", parts)
    return b"".join(chunks), content_type


def documents_body(*content_ids: str, inline: str | None = None) -> str:
    parent = etree.Element("{urn:test}Submit", nsmap={"t": "urn:test"})
    for n, cid in enumerate(content_ids):
        xop_include(etree.SubElement(parent, "{urn:test}Document", id=f"Doc{n}"), cid)
    if inline is not None:
        etree.SubElement(parent, "{urn:test}Document", id="Inline").text = inline
    etree.SubElement(parent, "{urn:test}Document", id="Empty").text = "  \n "
    return etree.tostring(parent).decode()


def test_mtom_request_and_document_content(tmp_path: Path) -> None:
    pdf = b"\r\n%PDF-1.7 \x00\xff\r\n"
    data, content_type = mtom_request(
        {"a@x": pdf, "unreferenced@x": b"orphan"},
        documents_body("a@x", "missing@x", inline=" SGVs\nbG8= "),
    )
    request = read(data, tmp_path, content_type=content_type)
    docs = {d.get("id"): d for d in request.payload}
    part = request.document_content(docs["Doc0"])
    assert part is not None and part.read_bytes() == pdf
    assert part.sha1 == hashlib.sha1(pdf, usedforsecurity=False).hexdigest()
    assert request.document_content(docs["Doc1"]) is None  # refers to a part never sent
    assert request.document_content(docs["Empty"]) is None
    inline = request.document_content(docs["Inline"])
    assert inline is not None
    assert inline.read_bytes() == b"Hello"
    assert inline.content_id == "inline:Inline"
    assert inline.sha256 == hashlib.sha256(b"Hello").hexdigest()
    assert inline.path.parent == tmp_path
    assert request.referenced_content_ids() == {"a@x", "missing@x"}
    assert set(request.attachments) - request.referenced_content_ids() == {"unreferenced@x"}
    # The repository links a part away before cleanup: cleanup must not mind.
    moved = tmp_path / "stored"
    os.link(part.path, moved)
    part.path.unlink()
    request.cleanup()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stored"]


def test_inline_base64_must_be_strict(tmp_path: Path) -> None:
    request = read(envelope(body=documents_body(inline="SGVsbG8=!!")), tmp_path)
    inline = next(d for d in request.payload if d.get("id") == "Inline")
    with pytest.raises(SoapFault) as info:
        request.document_content(inline)
    assert info.value.code is FaultCode.SENDER
    assert "base64" in info.value.reason
    assert list(tmp_path.iterdir()) == []


def test_mtom_request_with_bad_root_leaves_nothing_on_disk(tmp_path: Path) -> None:
    parts = [OutPart("a@x", "text/plain", 3, lambda: [b"abc"])]
    content_type, _, chunks = mtom_body(b"<broken", "application/soap+xml", parts)
    fault_of(b"".join(chunks), tmp_path, content_type=content_type)
    content_type, _, chunks = mtom_body(envelope(), "application/soap+xml", parts)
    data = b"".join(chunks).replace(
        b"Content-Type: application/xop+xml", b"Content-Type: image/png"
    )
    assert fault_of(data, tmp_path, content_type=content_type).http_status == 415


# --- responses --------------------------------------------------------------------------------


def response_xml(response) -> etree._Element:
    return etree.fromstring(b"".join(response.body))


def test_soap12_plain_response(tmp_path: Path) -> None:
    payload = etree.Element("{urn:test}Pong")
    response = soap_response(
        SoapVersion.SOAP12, payload, action="urn:a:Response", relates_to="urn:uuid:1"
    )
    headers = dict(response.headers)
    assert response.status == "200 OK"
    assert headers["Content-Type"] == 'application/soap+xml; charset=utf-8; action="urn:a:Response"'
    body = b"".join(response.body)
    assert int(headers["Content-Length"]) == len(body)
    root = etree.fromstring(body)
    action = root.find("s12:Header/wsa:Action", NS)
    assert action.text == "urn:a:Response"
    assert action.get(f"{{{SOAP12}}}mustUnderstand") == "true"
    assert root.findtext("s12:Header/wsa:RelatesTo", namespaces=NS) == "urn:uuid:1"
    assert root.find("s12:Body", NS)[0].tag == "{urn:test}Pong"


def test_soap11_plain_response() -> None:
    response = soap_response(
        SoapVersion.SOAP11, etree.Element("{urn:test}Pong"), action="urn:a", relates_to=None
    )
    assert dict(response.headers)["Content-Type"] == "text/xml; charset=utf-8"
    root = response_xml(response)
    assert root.tag == f"{{{SOAP11}}}Envelope"
    assert root.find("s11:Header/wsa:Action", NS).get(f"{{{SOAP11}}}mustUnderstand") == "1"
    assert root.find("s11:Header/wsa:RelatesTo", NS) is None


def test_mtom_response_streams_attachments(tmp_path: Path) -> None:
    document = tmp_path / "doc.bin"
    document.write_bytes(b"\r\nbytes\r\n" * 1000)
    payload = etree.Element("{urn:test}Docs")
    xop_include(etree.SubElement(payload, "{urn:test}Document"), "d1@x")
    part = OutPart("d1@x", "application/pdf", document.stat().st_size, file_chunks(document))
    response = soap_response(
        SoapVersion.SOAP12, payload, action="urn:r", relates_to=None, attachments=[part]
    )
    headers = dict(response.headers)
    body = b"".join(response.body)
    assert int(headers["Content-Length"]) == len(body)
    assert headers["Content-Type"].startswith("multipart/related;")
    assert 'action="urn:r"' in headers["Content-Type"]
    spool = tmp_path / "spool"
    spool.mkdir()
    root, _, parts = read_multipart(io.BytesIO(body), headers["Content-Type"], None, spool, LIMITS)
    assert parts["d1@x"].read_bytes() == document.read_bytes()
    assert etree.fromstring(root).find(".//xop:Include", NS).get("href") == "cid:d1@x"
    forced = soap_response(
        SoapVersion.SOAP12, etree.Element("e"), action="urn:r", relates_to=None, force_mtom=True
    )
    assert dict(forced.headers)["Content-Type"].startswith("multipart/related;")


def resolve(element: etree._Element) -> tuple[str, str]:
    prefix, _, local = element.text.partition(":")
    return element.nsmap[prefix], local


def test_soap12_fault_with_qualified_subcode() -> None:
    fault = SoapFault(FaultCode.SENDER, "assertion expired", subcode=(WSSE, "InvalidSecurity"))
    response = fault_response(SoapVersion.SOAP12, fault, relates_to="urn:uuid:9")
    assert response.status == "400 Bad Request"
    assert dict(response.headers)["Content-Type"].startswith("application/soap+xml")
    root = response_xml(response)
    assert root.findtext("s12:Header/wsa:Action", namespaces=NS) == WSA_FAULT_ACTION
    assert root.findtext("s12:Header/wsa:RelatesTo", namespaces=NS) == "urn:uuid:9"
    xml_fault = root.find("s12:Body/s12:Fault", NS)
    assert resolve(xml_fault.find("s12:Code/s12:Value", NS)) == (SOAP12, "Sender")
    subcode = xml_fault.find("s12:Code/s12:Subcode/s12:Value", NS)
    assert resolve(subcode) == (WSSE, "InvalidSecurity")
    text = xml_fault.find("s12:Reason/s12:Text", NS)
    assert text.text == "assertion expired"
    assert text.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    assert b"Traceback" not in etree.tostring(root)


def test_soap12_fault_details_by_code() -> None:
    receiver = fault_response(None, SoapFault(FaultCode.RECEIVER, "internal error"))
    assert receiver.status.startswith("500")
    root = response_xml(receiver)
    assert root.tag == f"{{{SOAP12}}}Envelope"
    value = root.find("s12:Body/s12:Fault/s12:Code/s12:Value", NS)
    assert resolve(value) == (SOAP12, "Receiver")
    assert root.find("s12:Body/s12:Fault/s12:Code/s12:Subcode", NS) is None
    mu = fault_response(SoapVersion.SOAP12, MustUnderstandFault("no", [("urn:x", "Custom")]))
    not_understood = response_xml(mu).find("s12:Header/s12:NotUnderstood", NS)
    prefix, _, local = not_understood.get("qname").partition(":")
    assert (not_understood.nsmap[prefix], local) == ("urn:x", "Custom")
    vm = fault_response(None, SoapFault(FaultCode.VERSION_MISMATCH, "which SOAP?"))
    assert response_xml(vm).find("s12:Header/s12:Upgrade/s12:SupportedEnvelope", NS) is not None
    too_big = fault_response(None, SoapFault(FaultCode.SENDER, "big", http_status=413))
    assert too_big.status == "413 Request Entity Too Large"


def test_soap11_faults() -> None:
    fault = SoapFault(FaultCode.SENDER, "bad signature", subcode=(WSSE, "FailedAuthentication"))
    response = fault_response(SoapVersion.SOAP11, fault)
    assert response.status.startswith("500")  # WS-I BP R1126
    assert dict(response.headers)["Content-Type"] == "text/xml; charset=utf-8"
    root = response_xml(response)
    xml_fault = root.find("s11:Body/s11:Fault", NS)
    assert resolve(xml_fault.find("faultcode")) == (WSSE, "FailedAuthentication")
    assert xml_fault.findtext("faultstring") == "bad signature"
    plain = response_xml(fault_response(SoapVersion.SOAP11, SoapFault(FaultCode.SENDER, "x")))
    assert resolve(plain.find("s11:Body/s11:Fault/faultcode", NS)) == (SOAP11, "Client")
    server = response_xml(fault_response(SoapVersion.SOAP11, SoapFault(FaultCode.RECEIVER, "x")))
    assert resolve(server.find("s11:Body/s11:Fault/faultcode", NS)) == (SOAP11, "Server")
    unsupported = fault_response(
        SoapVersion.SOAP11, SoapFault(FaultCode.SENDER, "x", http_status=415)
    )
    assert unsupported.status.startswith("415")


def test_inline_document_round_trip_through_base64(tmp_path: Path) -> None:
    data = os.urandom(3000) + b"\r\n"
    encoded = base64.encodebytes(data).decode()  # with line breaks, as some clients send
    request = read(envelope(body=documents_body(inline=encoded)), tmp_path)
    inline = next(d for d in request.payload if d.get("id") == "Inline")
    part = request.document_content(inline)
    assert part is not None and part.read_bytes() == data and part.size == len(data)
    request.cleanup()
    assert list(tmp_path.iterdir()) == []


def test_spliced_fragments_replace_the_splice_point() -> None:
    """Stored registry objects go into the answer as text; each declares its namespaces, so
    the result parses to the same tree as if they had been appended as elements."""
    payload = etree.Element("{urn:test}List", nsmap={"t": "urn:test"})
    payload.append(splice_point())
    fragments = [
        '<rim:A xmlns:rim="urn:rim" status="x">é</rim:A>',
        '<B xmlns="urn:other"><C/></B>',
    ]
    response = soap_response(
        SoapVersion.SOAP12, payload, action="urn:a", relates_to=None, spliced=fragments
    )
    body = b"".join(response.body)
    assert int(dict(response.headers)["Content-Length"]) == len(body)
    root = etree.fromstring(body)
    [answer] = root.iter("{urn:test}List")
    assert [c.tag for c in answer] == ["{urn:rim}A", "{urn:other}B"]
    assert answer[0].text == "é" and answer[0].get("status") == "x"
    assert not list(root.iter(etree.Comment))


def test_splicing_needs_a_splice_point() -> None:
    with pytest.raises(ValueError, match="splice point"):
        soap_response(
            SoapVersion.SOAP12,
            etree.Element("{urn:test}List"),
            action="urn:a",
            relates_to=None,
            spliced=["<x/>"],
        )
