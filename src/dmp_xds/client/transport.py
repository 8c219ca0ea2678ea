"""SOAP 1.2/1.1 client transport: envelopes with WS-Addressing, streamed MTOM out and in.

The project's own client exists because zeep cannot send MTOM and mangles received attachments
(DESIGN.md). Requests are streamed from a generator with an exact Content-Length, so a large
document is read from disk while it is sent; MTOM responses go through the same streaming reader
as the server (:func:`dmp_xds.soap.mtom.read_multipart`) and are spooled before being read into
bytes once. Responses are parsed with the same hardened parser as requests: a server's answer is
untrusted input too.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests
from lxml import etree

from ..errors import SoapFault
from ..namespaces import SOAP11, SOAP12, WSA
from ..soap.envelope import WSA_ANONYMOUS, Limits, SoapVersion
from ..soap.mtom import (
    OutPart,
    element_content,
    file_chunks,
    mtom_body,
    parse_content_type,
    read_multipart,
)
from ..soap.xmlparser import parse_xml, serialize

# Generous: the client talks to servers it chose, but must still not be exhausted by one.
DEFAULT_CLIENT_LIMITS = Limits(
    max_body_bytes=8 * 1024**3,
    max_xml_bytes=512 * 1024**2,
    max_attachments=100_000,
)
_FAULT_CODES_11 = {
    "Client": "Sender",
    "Server": "Receiver",
    "VersionMismatch": "VersionMismatch",
    "MustUnderstand": "MustUnderstand",
}


class ClientError(Exception):
    """The server's answer is not a SOAP message we can read (wrong media type, bad XML, ...)."""

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


@dataclass
class Fault:
    """A received SOAP fault. ``code`` is the SOAP 1.2 name (Sender, Receiver, ...; SOAP 1.1
    codes are mapped), ``subcode`` a QName in Clark notation ``{namespace}local``."""

    code: str
    subcode: str | None
    reason: str


@dataclass
class SoapReply:
    http_status: int
    version: SoapVersion
    envelope: etree._Element
    payload: etree._Element | None  # the Body's first element (the Fault element for faults)
    action: str | None
    relates_to: str | None
    fault: Fault | None
    attachments: dict[str, bytes] = field(default_factory=dict)

    def attachment_for(self, element: etree._Element) -> bytes | None:
        """The bytes ``element`` carries: its xop:Include's part, or inline base64 text."""
        try:
            content_id, data = element_content(element)
        except ValueError:
            raise ClientError("invalid inline base64 content in the response") from None
        return self.attachments.get(content_id) if content_id is not None else data


class _SizedBody:
    """A generator body whose length requests can see, so it sends Content-Length, not chunks.

    Some servers (and wsgiref) do not accept chunked request bodies.
    """

    def __init__(self, length: int, chunks: Iterator[bytes]) -> None:
        self._length = length
        self._chunks = chunks

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks


class SoapClient:
    """Posts SOAP messages to ``base_url`` + path and reads the replies."""

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session | None = None,
        soap_version: SoapVersion = SoapVersion.SOAP12,
        timeout: float = 60,
        limits: Limits | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.soap_version = soap_version
        self.timeout = timeout
        self.limits = limits or DEFAULT_CLIENT_LIMITS

    def url(self, path: str) -> str:
        return self.base_url + path

    def envelope(
        self,
        path: str,
        action: str,
        payload: etree._Element,
        headers: Sequence[etree._Element] = (),
    ) -> etree._Element:
        """The request envelope (public so that a signer can work on exactly what is sent)."""
        version = self.soap_version
        ns = version.ns
        envelope = etree.Element(f"{{{ns}}}Envelope", nsmap={version.prefix: ns, "wsa": WSA})
        header = etree.SubElement(envelope, f"{{{ns}}}Header")
        element = etree.SubElement(header, f"{{{WSA}}}Action")
        element.set(f"{{{ns}}}mustUnderstand", version.true)
        element.text = action
        etree.SubElement(header, f"{{{WSA}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
        etree.SubElement(header, f"{{{WSA}}}To").text = self.url(path)
        reply_to = etree.SubElement(header, f"{{{WSA}}}ReplyTo")
        etree.SubElement(reply_to, f"{{{WSA}}}Address").text = WSA_ANONYMOUS
        for extra in headers:
            header.append(copy.deepcopy(extra))
        body = etree.SubElement(envelope, f"{{{ns}}}Body")
        # A payload that is the root of its own tree is moved; one inside another tree is copied
        # so that the caller's document stays intact.
        body.append(payload if payload.getparent() is None else copy.deepcopy(payload))
        return envelope

    def call(
        self,
        path: str,
        action: str,
        payload: etree._Element,
        *,
        attachments: Sequence[tuple[str, str, bytes | Path]] = (),
        mtom: bool | None = None,
        headers: Sequence[etree._Element] = (),
    ) -> SoapReply:
        """Send one request and return the reply (faults are returned, not raised).

        ``attachments`` are ``(content_id, content_type, bytes or file path)``; a path is read
        only while the request is being sent. MTOM is used when there are attachments or
        ``mtom`` is true.
        """
        envelope = self.envelope(path, action, payload, headers)
        return self.send_envelope(path, action, envelope, attachments=attachments, mtom=mtom)

    def send_envelope(
        self,
        path: str,
        action: str,
        envelope: etree._Element,
        *,
        attachments: Sequence[tuple[str, str, bytes | Path]] = (),
        mtom: bool | None = None,
    ) -> SoapReply:
        """Send a ready-made envelope (for example one signed after :meth:`envelope`)."""
        version = self.soap_version
        xml = serialize(envelope)
        http_headers = {"Accept": f"{version.media_type}, multipart/related"}
        if version is SoapVersion.SOAP11:
            http_headers["SOAPAction"] = f'"{action}"'
        if attachments or mtom:
            parts = [_out_part(*attachment) for attachment in attachments]
            content_type, length, chunks = mtom_body(
                xml,
                version.media_type,
                parts,
                action=action if version is SoapVersion.SOAP12 else None,
            )
            http_headers["Content-Type"] = content_type
            data: object = _SizedBody(length, chunks)
        else:
            http_headers["Content-Type"] = version.content_type(action)
            data = xml
        response = self.session.post(
            self.url(path), data=data, headers=http_headers, timeout=self.timeout, stream=True
        )
        try:
            return self._read_reply(response)
        finally:
            response.close()

    def post_raw(self, path: str, body: bytes, content_type: str) -> requests.Response:
        """POST arbitrary bytes (malformed-input tests); the response is read fully."""
        return self.session.post(
            self.url(path),
            data=body,
            headers={"Content-Type": content_type},
            timeout=self.timeout,
        )

    def _read_reply(self, response: requests.Response) -> SoapReply:
        content_type = response.headers.get("Content-Type", "")
        media_type = parse_content_type(content_type).get_content_type()
        attachments: dict[str, bytes] = {}
        if media_type == "multipart/related":
            spool = Path(tempfile.mkdtemp(prefix="dmp-xds-client-"))
            try:
                response.raw.decode_content = True
                xml, _root_type, spooled = read_multipart(
                    response.raw, content_type, None, spool, self.limits
                )
                attachments = {cid: part.read_bytes() for cid, part in spooled.items()}
            except SoapFault as exc:
                raise ClientError(
                    f"unreadable MTOM response: {exc.reason}", response.status_code
                ) from None
            finally:
                shutil.rmtree(spool, ignore_errors=True)
        elif media_type in ("application/soap+xml", "text/xml", "application/xml"):
            xml = response.content
        else:
            raise ClientError(
                f"HTTP {response.status_code} with {media_type!r}, not a SOAP message",
                response.status_code,
            )
        return parse_reply(xml, response.status_code, attachments)


def _out_part(content_id: str, content_type: str, data: bytes | Path) -> OutPart:
    if isinstance(data, Path):
        return OutPart(content_id, content_type, data.stat().st_size, file_chunks(data))
    return OutPart(content_id, content_type, len(data), lambda: (data,))


def parse_reply(xml: bytes, http_status: int, attachments: dict[str, bytes]) -> SoapReply:
    """Read a response envelope: version, WS-A Action and RelatesTo, payload or fault."""
    try:
        envelope = parse_xml(xml)
    except SoapFault as exc:
        raise ClientError(f"unreadable SOAP response: {exc.reason}", http_status) from None
    tag = etree.QName(envelope)
    if tag.localname != "Envelope" or tag.namespace not in (SOAP11, SOAP12):
        raise ClientError("the response is not a SOAP envelope", http_status)
    version = SoapVersion(tag.namespace)
    ns = version.ns
    header = envelope.find(f"{{{ns}}}Header")
    action = relates_to = None
    if header is not None:
        action = (header.findtext(f"{{{WSA}}}Action") or "").strip() or None
        relates_to = (header.findtext(f"{{{WSA}}}RelatesTo") or "").strip() or None
    body = envelope.find(f"{{{ns}}}Body")
    payload = None
    if body is not None:
        payload = next((c for c in body if isinstance(c.tag, str)), None)
    fault = None
    if payload is not None and payload.tag == f"{{{ns}}}Fault":
        fault = _parse_fault(payload, version)
    return SoapReply(
        http_status, version, envelope, payload, action, relates_to, fault, attachments
    )


def _resolve(element: etree._Element | None) -> tuple[str, str]:
    """Resolve a QName written as element text to (namespace, local name)."""
    if element is None or not element.text:
        return "", ""
    text = element.text.strip()
    prefix, _, local = text.rpartition(":")
    return (element.nsmap or {}).get(prefix or None, ""), local


def _parse_fault(element: etree._Element, version: SoapVersion) -> Fault:
    ns = version.ns
    if version is SoapVersion.SOAP12:
        _, code = _resolve(element.find(f"{{{ns}}}Code/{{{ns}}}Value"))
        sub_ns, sub_local = _resolve(element.find(f"{{{ns}}}Code/{{{ns}}}Subcode/{{{ns}}}Value"))
        subcode = f"{{{sub_ns}}}{sub_local}" if sub_local else None
        reason = element.findtext(f"{{{ns}}}Reason/{{{ns}}}Text") or ""
        return Fault(code, subcode, reason.strip())
    code_ns, code_local = _resolve(element.find("faultcode"))
    reason = (element.findtext("faultstring") or "").strip()
    if code_ns == SOAP11:
        return Fault(_FAULT_CODES_11.get(code_local, code_local), None, reason)
    # WS-Security 1.1 style: the specific code replaces the SOAP 1.1 faultcode.
    return Fault("Sender", f"{{{code_ns}}}{code_local}" if code_local else None, reason)
