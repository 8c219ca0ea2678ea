"""The client transport against a tiny real server that echoes what it received.

The server side is the real ``soap`` package behind ``wsgiref``, so every test checks both
directions: the client's envelope and MTOM writer against the server's reader, and the server's
response writer against the client's reader.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from lxml import etree

from dmp_xds.client.transport import ClientError, SoapClient, SoapReply, parse_reply
from dmp_xds.errors import FaultCode, SoapFault
from dmp_xds.namespaces import SOAP11, SOAP12, WSA, WSSE
from dmp_xds.soap.envelope import (
    Limits,
    SoapRequest,
    SoapVersion,
    fault_response,
    read_soap_request,
    soap_response,
)
from dmp_xds.soap.mtom import OutPart, xop_include

T = "urn:test"
LIMITS = Limits(max_body_bytes=64 * 1024**2, max_xml_bytes=1024**2, max_attachments=20)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def echo(request: SoapRequest, environ: dict[str, Any]) -> tuple[etree._Element, list[OutPart]]:
    """Report what the server saw, and send every received document back as an attachment."""
    out = etree.Element(f"{{{T}}}Echo", nsmap={"t": T})
    seen = request.addressing
    for name, value in (
        ("Action", seen.action),
        ("MessageID", seen.message_id),
        ("To", seen.to),
        ("ReplyTo", seen.reply_to),
        ("ContentType", environ.get("CONTENT_TYPE")),
        ("SoapAction", environ.get("HTTP_SOAPACTION")),
        ("ContentLength", environ.get("CONTENT_LENGTH")),
    ):
        etree.SubElement(out, f"{{{T}}}{name}").text = value
    for block in request.header if request.header is not None else ():
        etree.SubElement(out, f"{{{T}}}Header").text = block.tag
    parts = []
    for document in request.payload.iter(f"{{{T}}}Doc"):
        part = request.document_content(document)
        echoed = etree.SubElement(out, f"{{{T}}}Doc", id=document.get("id"))
        if part is not None:
            echoed.set("sha1", part.sha1)
            content_id = f"echo-{document.get('id')}@server"
            xop_include(echoed, content_id)

            def chunks(path: Path = part.path) -> Iterator[bytes]:
                with path.open("rb") as handle:
                    while block := handle.read(65536):
                        yield block

            parts.append(OutPart(content_id, part.content_type, part.size, chunks))
    return out, parts


def make_app(spool: Path):
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"] != "/echo":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such endpoint\n"]
        request = None
        try:
            request = read_soap_request(environ, spool, LIMITS)
            if request.addressing.action == "urn:test:refuse":
                raise SoapFault(
                    FaultCode.SENDER, "assertion expired", subcode=(WSSE, "InvalidSecurity")
                )
            payload, parts = echo(request, environ)
            response = soap_response(
                request.version,
                payload,
                action=f"{request.addressing.action}Response",
                relates_to=request.addressing.message_id,
                attachments=parts,
            )
        except SoapFault as fault:
            response = fault_response(request.version if request else None, fault)
        start_response(response.status, response.headers)

        def body() -> Iterator[bytes]:
            # Spooled files are streamed back, so they are removed only afterwards.
            try:
                yield from response.body
            finally:
                if request is not None:
                    request.cleanup()

        return body()

    return app


@pytest.fixture(scope="module")
def spool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def base_url(spool: Path) -> Iterator[str]:
    server = make_server(
        "127.0.0.1", 0, make_app(spool), server_class=WSGIServer, handler_class=QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def spool_empties(spool: Path) -> bool:
    """The server removes its spooled files after the last byte is sent: allow it a moment."""
    deadline = time.monotonic() + 2
    while any(spool.iterdir()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def ping(*docs: etree._Element) -> etree._Element:
    payload = etree.Element(f"{{{T}}}Ping", nsmap={"t": T})
    payload.extend(docs)
    return payload


def doc(doc_id: str, content_id: str | None = None, inline: str | None = None) -> etree._Element:
    element = etree.Element(f"{{{T}}}Doc", id=doc_id)
    if content_id:
        xop_include(element, content_id)
    element.text = inline
    return element


def seen(reply: SoapReply, name: str) -> str | None:
    assert reply.payload is not None
    return reply.payload.findtext(f"{{{T}}}{name}")


def test_plain_soap12_call_with_addressing(base_url: str, spool: Path) -> None:
    client = SoapClient(base_url)
    reply = client.call("/echo", "urn:test:ping", ping())
    assert reply.http_status == 200
    assert reply.version is SoapVersion.SOAP12
    assert reply.fault is None
    assert reply.action == "urn:test:pingResponse"
    assert seen(reply, "Action") == "urn:test:ping"
    assert seen(reply, "To") == f"{base_url}/echo"
    assert seen(reply, "ReplyTo") == "http://www.w3.org/2005/08/addressing/anonymous"
    message_id = seen(reply, "MessageID")
    assert message_id and message_id.startswith("urn:uuid:")
    assert reply.relates_to == message_id
    assert (
        seen(reply, "ContentType") == 'application/soap+xml; charset=utf-8; action="urn:test:ping"'
    )
    assert reply.attachments == {}
    assert spool_empties(spool)


def test_soap11_call(base_url: str) -> None:
    reply = SoapClient(base_url, soap_version=SoapVersion.SOAP11).call("/echo", "urn:a", ping())
    assert reply.version is SoapVersion.SOAP11
    assert reply.envelope.tag == f"{{{SOAP11}}}Envelope"
    assert seen(reply, "SoapAction") == '"urn:a"'
    assert seen(reply, "ContentType") == "text/xml; charset=utf-8"
    assert reply.relates_to == seen(reply, "MessageID")


def test_mtom_both_ways_bytes_and_files(base_url: str, tmp_path: Path, spool: Path) -> None:
    small = b"\r\n<ClinicalDocument/>\r\n"
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        for _ in range(40):
            handle.write(os.urandom(64 * 1024))
        handle.write(b"\r\n--tail\r\n")
    reply = SoapClient(base_url).call(
        "/echo",
        "urn:test:pnr",
        ping(doc("D1", "one@client"), doc("D2", "two@client")),
        attachments=[
            ("one@client", "text/xml", small),
            ("two@client", "application/pdf", big),
        ],
    )
    assert reply.fault is None
    assert seen(reply, "ContentType").startswith("multipart/related;")
    assert int(seen(reply, "ContentLength")) > big.stat().st_size  # sent with a length
    docs = {d.get("id"): d for d in reply.payload.iterfind(f"{{{T}}}Doc")}
    assert docs["D1"].get("sha1") == hashlib.sha1(small, usedforsecurity=False).hexdigest()
    assert reply.attachment_for(docs["D1"]) == small
    assert reply.attachment_for(docs["D2"]) == big.read_bytes()
    assert set(reply.attachments) == {"echo-D1@server", "echo-D2@server"}
    assert spool_empties(spool)


def test_mtom_forced_without_attachments_and_inline_content(base_url: str) -> None:
    reply = SoapClient(base_url).call(
        "/echo", "urn:test:inline", ping(doc("I", inline="SGVsbG8=")), mtom=True
    )
    assert seen(reply, "ContentType").startswith("multipart/related;")
    inline = reply.payload.find(f"{{{T}}}Doc")
    assert reply.attachment_for(inline) == b"Hello"


def test_extra_headers_and_must_understand(base_url: str) -> None:
    security = etree.Element(f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
    security.set(f"{{{SOAP12}}}mustUnderstand", "true")
    client = SoapClient(base_url)
    reply = client.call("/echo", "urn:a", ping(), headers=[security])
    headers = [h.text for h in reply.payload.iterfind(f"{{{T}}}Header")]
    assert f"{{{WSSE}}}Security" in headers
    assert f"{{{WSA}}}Action" in headers
    unknown = etree.Element("{urn:x}Unknown")
    unknown.set(f"{{{SOAP12}}}mustUnderstand", "true")
    reply = client.call("/echo", "urn:a", ping(), headers=[unknown])
    assert reply.fault is not None and reply.fault.code == "MustUnderstand"


def test_faults_in_both_versions(base_url: str) -> None:
    reply = SoapClient(base_url).call("/echo", "urn:test:refuse", ping())
    assert reply.http_status == 400
    assert reply.fault is not None
    assert reply.fault.code == "Sender"
    assert reply.fault.subcode == f"{{{WSSE}}}InvalidSecurity"
    assert reply.fault.reason == "assertion expired"
    assert reply.action == "http://www.w3.org/2005/08/addressing/soap/fault"
    reply = SoapClient(base_url, soap_version=SoapVersion.SOAP11).call(
        "/echo", "urn:test:refuse", ping()
    )
    assert reply.http_status == 500
    assert reply.fault is not None
    assert reply.fault.code == "Sender"
    assert reply.fault.subcode == f"{{{WSSE}}}InvalidSecurity"


def test_post_raw_and_non_soap_answers(base_url: str) -> None:
    client = SoapClient(base_url)
    response = client.post_raw("/echo", b"<not-closed", "application/soap+xml")
    assert response.status_code == 400
    assert b"malformed XML" in response.content
    assert client.post_raw("/echo", b"hello", "text/plain").status_code == 415
    with pytest.raises(ClientError) as info:
        client.call("/nowhere", "urn:a", ping())
    assert info.value.http_status == 404


def test_payload_inside_another_tree_is_copied(base_url: str) -> None:
    holder = etree.Element("holder")
    payload = etree.SubElement(holder, f"{{{T}}}Ping")
    SoapClient(base_url).call("/echo", "urn:a", payload)
    assert payload.getparent() is holder


def test_parse_reply_variants() -> None:
    soap11_client_fault = (
        f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><s:Fault><faultcode>s:Client</faultcode>'
        "<faultstring>no</faultstring></s:Fault></s:Body></s:Envelope>"
    ).encode()
    reply = parse_reply(soap11_client_fault, 500, {})
    assert reply.fault is not None
    assert (reply.fault.code, reply.fault.subcode, reply.fault.reason) == ("Sender", None, "no")
    with pytest.raises(ClientError):
        parse_reply(b"<html/>", 200, {})
    with pytest.raises(ClientError):
        parse_reply(b"<!DOCTYPE x><x/>", 200, {})
    envelope = f'<e:Envelope xmlns:e="{SOAP12}"><e:Body><d>!!notbase64</d></e:Body></e:Envelope>'
    reply = parse_reply(envelope.encode(), 200, {})
    with pytest.raises(ClientError):
        reply.attachment_for(reply.payload)
