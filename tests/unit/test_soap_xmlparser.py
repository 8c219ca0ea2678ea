"""The hardened parser refuses what SOAP 1.2 forbids and what could hurt the server."""

from __future__ import annotations

import threading

import pytest
from lxml import etree

from dmp_xds.errors import FaultCode, SoapFault
from dmp_xds.soap.xmlparser import parse_xml, serialize


def refused(data: bytes, **kw: int) -> SoapFault:
    with pytest.raises(SoapFault) as info:
        parse_xml(data, **kw)
    assert info.value.code is FaultCode.SENDER
    assert info.value.http_status == 400
    return info.value


def test_parses_plain_xml_and_drops_comments() -> None:
    root = parse_xml(
        b'<?xml version="1.0" encoding="UTF-8"?><a xmlns="urn:x"><!-- c --><b>t</b></a>'
    )
    assert root.tag == "{urn:x}a"
    assert [c.tag for c in root] == ["{urn:x}b"]


def test_serialize_is_utf8_with_declaration() -> None:
    root = etree.Element("a")
    root.text = "é"
    data = serialize(root)
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert "é".encode() in data
    assert not serialize(root, xml_declaration=False).startswith(b"<?xml")


def test_doctype_is_refused_even_without_entities() -> None:
    assert "document type" in refused(b"<!DOCTYPE a><a/>").reason


def test_external_entity_is_refused_and_never_read() -> None:
    data = b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>'
    fault = refused(data)
    assert "root:" not in fault.reason


def test_parameter_entity_and_external_dtd_are_refused() -> None:
    refused(b'<!DOCTYPE a [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><a/>')
    refused(b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/evil.dtd"><a/>')


def test_billion_laughs_is_refused() -> None:
    entities = "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    data = f'<!DOCTYPE a [<!ENTITY l0 "lol">{entities}]><a>&l9;</a>'.encode()
    refused(data)


def test_processing_instructions_are_refused_anywhere() -> None:
    assert "processing instruction" in refused(b"<?evil x?><a/>").reason
    assert "processing instruction" in refused(b"<a><b><?evil x?></b></a>").reason
    assert "processing instruction" in refused(b"<a/><?evil x?>").reason


def test_depth_limit() -> None:
    def nested(depth: int) -> bytes:
        return b"<e>" * depth + b"</e>" * depth

    assert parse_xml(nested(200)).tag == "e"
    assert "deeper than 200" in refused(nested(201)).reason
    refused(nested(6), max_depth=5)
    refused(nested(300))  # beyond libxml2's own limit too


def test_malformed_xml_reason_has_no_document_content() -> None:
    fault = refused(b"<a>Jeanne DUPONT 1 23 45 67 890 123</b>")
    assert fault.reason.startswith("malformed XML")
    assert "DUPONT" not in fault.reason
    refused(b"")
    refused(b"not xml at all")
    refused(b"<a>&undeclared;</a>")


def test_one_parser_per_thread() -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for n in range(200):
                root = parse_xml(f"<a><b>{n}</b></a>".encode())
                assert root[0].text == str(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
