"""Malformed and hostile input over raw HTTP: each gets a SOAP fault, never a traceback."""

from __future__ import annotations

import pytest
import requests
from lxml import etree

from tests.fixtures.metadata import new_patient_id

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
CT12 = "application/soap+xml; charset=utf-8"

QUERY = (
    '<query:AdhocQueryRequest xmlns:query="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0" '
    'xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">'
    '<query:ResponseOption returnType="ObjectRef"/>'
    '<rim:AdhocQuery id="urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"/>'
    "</query:AdhocQueryRequest>"
)


def envelope(body: str, action: str = "urn:ihe:iti:2007:RegistryStoredQuery", ns: str = SOAP12):
    return (
        f'<s:Envelope xmlns:s="{ns}" xmlns:a="http://www.w3.org/2005/08/addressing">'
        f'<s:Header><a:Action s:mustUnderstand="1">{action}</a:Action>'
        "<a:MessageID>urn:uuid:6f1c4b5e-0000-4000-8000-000000000001</a:MessageID></s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def post(server, body: bytes, content_type: str = CT12, path: str = "/xds/registry"):
    return requests.post(
        server.url + path, data=body, headers={"Content-Type": content_type}, timeout=30
    )


def fault_of(response: requests.Response) -> tuple[str, str | None, str]:
    """(Code value, Subcode value, reason) of a SOAP 1.2 fault."""
    root = etree.fromstring(response.content)
    fault = root.find(f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault")
    assert fault is not None, response.text
    code = fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value") or ""
    sub = fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Subcode/{{{SOAP12}}}Value")
    reason = fault.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text") or ""
    assert "Traceback" not in response.text
    return code, sub, reason


@pytest.mark.parametrize(
    "body",
    [
        b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Body>",
        b"not xml at all",
        b"",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Body>&e;</s:Body>"
        b"</s:Envelope>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">'
        b"]><s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Body>&b;"
        b"</s:Body></s:Envelope>",
        b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Body>"
        + b"<a>" * 5000
        + b"</a>" * 5000
        + b"</s:Body></s:Envelope>",
        b"<?pi nope?><s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'>"
        b"<s:Body><x/></s:Body></s:Envelope>",
    ],
    ids=["truncated", "not-xml", "empty", "xxe", "entity-expansion", "too-deep", "pi"],
)
def test_malformed_envelopes_get_a_sender_fault(server, body: bytes) -> None:
    response = post(server, body)
    assert response.status_code == 400
    code, _, reason = fault_of(response)
    assert code.endswith(":Sender")
    assert reason
    assert "/etc/passwd" not in response.text or "root:" not in response.text


def test_not_an_envelope_is_a_version_mismatch(server) -> None:
    response = post(server, b"<Envelope xmlns='urn:nope'><Body/></Envelope>")
    code, _, _ = fault_of(response)
    assert code.endswith(":VersionMismatch")


def test_unknown_action(server) -> None:
    response = post(server, envelope(QUERY, action="urn:example:unknown"))
    code, subcode, reason = fault_of(response)
    assert code.endswith(":Sender")
    assert subcode and subcode.endswith(":ActionNotSupported")
    assert "urn:example:unknown" in reason


def test_must_understand_header_we_do_not_know(server) -> None:
    body = envelope(QUERY).replace(
        b"<s:Header>",
        b"<s:Header><x:Secret xmlns:x='urn:example' s:mustUnderstand='true'/>",
    )
    code, _, _ = fault_of(post(server, body))
    assert code.endswith(":MustUnderstand")


def test_unsupported_media_type(server) -> None:
    response = post(server, envelope(QUERY), content_type="application/json")
    assert response.status_code == 415
    fault_of(response)


def test_oversized_body_is_refused(server) -> None:
    big = envelope("<x>" + "a" * (40 * 1024 * 1024) + "</x>")
    response = post(server, big)
    assert response.status_code == 413
    fault_of(response)


def test_wrong_mtom_is_refused(server) -> None:
    ct = 'multipart/related; boundary="XYZ"; type="application/xop+xml"; start="<root>"'
    body = b"--XYZ\r\nContent-Type: application/xop+xml\r\nContent-ID: <root>\r\n\r\n<broken"
    response = post(server, body, content_type=ct, path="/xds/repository")
    assert response.status_code == 400
    fault_of(response)


def test_soap11_fault_for_soap11_request(server) -> None:
    body = envelope("<x/>", action="urn:example:unknown", ns=SOAP11)
    response = post(server, body, content_type="text/xml; charset=utf-8")
    root = etree.fromstring(response.content)
    fault = root.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert fault is not None
    assert fault.findtext("faultstring")


def test_ws_addressing_reply(server, test_pki) -> None:
    [vihf] = test_pki.vihf_headers(new_patient_id())()
    body = envelope(QUERY).replace(b"</s:Header>", etree.tostring(vihf) + b"</s:Header>")
    response = post(server, body)
    assert response.status_code == 200
    root = etree.fromstring(response.content)
    wsa = "http://www.w3.org/2005/08/addressing"
    assert root.findtext(f"{{{SOAP12}}}Header/{{{wsa}}}Action") == (
        "urn:ihe:iti:2007:RegistryStoredQueryResponse"
    )
    assert root.findtext(f"{{{SOAP12}}}Header/{{{wsa}}}RelatesTo") == (
        "urn:uuid:6f1c4b5e-0000-4000-8000-000000000001"
    )
    assert response.headers["X-Request-Id"]
    # The query lacks its required parameters: an XDS error, not a fault.
    body = root.find(f"{{{SOAP12}}}Body")
    assert body is not None and "XDSStoredQueryMissingParam" in etree.tostring(body).decode()


def test_wsdl_is_published(server) -> None:
    for path in ("/xds/registry", "/xds/repository"):
        response = requests.get(server.url + path + "?wsdl", timeout=10)
        assert response.status_code == 200
        root = etree.fromstring(response.content)
        assert etree.QName(root).localname == "definitions"
        assert server.url + path in response.text
    assert (
        requests.get(server.url + "/xds/registry?xsd=../../etc/passwd", timeout=10).status_code
        == 404
    )


def test_logs_do_not_contain_content(server) -> None:
    marker = "CONTENT-MARKER-7731"
    post(server, envelope(f"<x>{marker}</x>", action="urn:example:unknown"))
    post(server, f"<broken>{marker}".encode())
    assert marker not in server.log_text()
