"""SOAP envelopes in and out: version, WS-Addressing, mustUnderstand, faults.

XDS.b is SOAP 1.2 with WS-Addressing; SOAP 1.1 is accepted because some older clients still send
it, and answered in the version the client used. Reading a request produces a
:class:`SoapRequest` whose attachments are already on disk (see :mod:`.mtom`); writing produces a
:class:`WsgiResponse` whose body may be a generator streaming documents.

Everything a client can get wrong raises :class:`~dmp_xds.errors.SoapFault`; faults are rendered
by :func:`fault_response` with the reason only, never a traceback or the request's content.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from http import HTTPStatus
from pathlib import Path
from typing import Any

from lxml import etree

from ..errors import FaultCode, SoapFault
from ..namespaces import SOAP11, SOAP12, WSA, WSSE, XOP
from .mtom import (
    XOP_MEDIA_TYPE,
    HashingWriter,
    OutPart,
    SpooledPart,
    body_chunks,
    cid_from_href,
    element_content,
    mtom_body,
    parse_content_type,
    read_multipart,
)
from .xmlparser import parse_xml, serialize

WSA_FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"
WSA_ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
# Header blocks targeted at these roles/actors are ours to process (absent means the same).
_OUR_ROLES = {
    "",
    "http://www.w3.org/2003/05/soap-envelope/role/ultimateReceiver",
    "http://www.w3.org/2003/05/soap-envelope/role/next",
    "http://schemas.xmlsoap.org/soap/actor/next",
}
# Header blocks we process, so mustUnderstand on them is fine: every WS-A header, and the
# WS-Security header that the security layer reads.
_UNDERSTOOD_NAMESPACES = {WSA}
_UNDERSTOOD_HEADERS = {f"{{{WSSE}}}Security"}
# Familiar prefixes for fault subcodes (any other namespace gets "sub").
_SUBCODE_PREFIXES = {WSSE: "wsse", WSA: "wsa"}


class SoapVersion(Enum):
    SOAP11 = SOAP11
    SOAP12 = SOAP12

    @property
    def ns(self) -> str:
        return self.value

    @property
    def media_type(self) -> str:
        return "text/xml" if self is SoapVersion.SOAP11 else "application/soap+xml"

    @property
    def prefix(self) -> str:
        return "soap" if self is SoapVersion.SOAP11 else "env"

    @property
    def true(self) -> str:
        """The mustUnderstand value conventional for the version."""
        return "1" if self is SoapVersion.SOAP11 else "true"

    def content_type(self, action: str | None) -> str:
        """Content-Type of a plain (non-MTOM) message; SOAP 1.2 carries the action in it."""
        if self is SoapVersion.SOAP11 or not action:
            return f"{self.media_type}; charset=utf-8"
        return f'{self.media_type}; charset=utf-8; action="{action}"'


@dataclass
class Addressing:
    action: str | None = None
    message_id: str | None = None
    to: str | None = None
    reply_to: str | None = None


@dataclass
class Limits:
    """Request size limits (from configuration). ``max_body_bytes`` bounds a whole multipart
    body, ``max_xml_bytes`` the SOAP envelope itself."""

    max_body_bytes: int
    max_xml_bytes: int
    max_attachments: int
    max_depth: int = 200
    max_part_header_bytes: int = 8192


class MustUnderstandFault(SoapFault):
    """A MustUnderstand fault naming the header blocks we do not understand (SOAP 1.2 5.4.8)."""

    def __init__(self, reason: str, not_understood: list[tuple[str, str]]) -> None:
        super().__init__(FaultCode.MUST_UNDERSTAND, reason)
        self.not_understood = not_understood


@dataclass
class SoapRequest:
    version: SoapVersion
    envelope: etree._Element
    header: etree._Element | None
    payload: etree._Element
    addressing: Addressing
    attachments: dict[str, SpooledPart]
    spool_dir: Path
    _inline: list[Path] = field(default_factory=list, repr=False)

    def document_content(self, element: etree._Element) -> SpooledPart | None:
        """The bytes an element carries: its xop:Include's attachment, or inline base64.

        Returns None when the element refers to a part that was not sent, or carries nothing.
        Inline content is spooled like an attachment so that callers handle one kind of thing;
        each call spools a new copy, so call it once per element.
        """
        where = element.get("id", "")
        try:
            content_id, data = element_content(element)
        except ValueError:
            raise SoapFault(
                FaultCode.SENDER, f"invalid base64 content in element with id {where!r}"
            ) from None
        if content_id is not None:
            return self.attachments.get(content_id)
        if data is None:
            return None
        writer = HashingWriter(self.spool_dir)
        self._inline.append(writer.path)
        try:
            writer.write(data)
        except BaseException:
            writer.discard()
            raise
        return writer.finish(f"inline:{where}", "application/octet-stream")

    def referenced_content_ids(self) -> set[str]:
        """Content-IDs that some xop:Include of the payload refers to."""
        return {
            cid_from_href(include.get("href", ""))
            for include in self.payload.iter(f"{{{XOP}}}Include")
        }

    def cleanup(self) -> None:
        """Delete the spooled files still present (the repository may have linked some away)."""
        paths = [part.path for part in self.attachments.values()] + self._inline
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _content_length(environ: dict[str, Any]) -> int | None:
    raw = (environ.get("CONTENT_LENGTH") or "").strip()
    if not raw:
        if not environ.get("wsgi.input_terminated"):
            raise SoapFault(FaultCode.SENDER, "Content-Length required", http_status=411)
        return None
    if not raw.isdigit():
        raise SoapFault(FaultCode.SENDER, "invalid Content-Length")
    return int(raw)


def _read_body(stream: Any, content_length: int | None, limit: int) -> bytes:
    return b"".join(body_chunks(stream, content_length, limit, "SOAP message"))


def read_soap_request(environ: dict[str, Any], spool_dir: Path, limits: Limits) -> SoapRequest:
    """Read, parse and check the SOAP request of a WSGI environ.

    Attachments are spooled to ``spool_dir``; the caller must call :meth:`SoapRequest.cleanup`
    when done. On failure nothing is left on disk.
    """
    if environ.get("REQUEST_METHOD", "GET") != "POST":
        raise SoapFault(FaultCode.SENDER, "SOAP requests are POSTed", http_status=405)
    content_type = environ.get("CONTENT_TYPE", "")
    media_type = parse_content_type(content_type).get_content_type()
    if media_type not in ("multipart/related", "application/soap+xml", "text/xml"):
        raise SoapFault(FaultCode.SENDER, f"unsupported media type {media_type!r}", http_status=415)
    content_length = _content_length(environ)
    stream = environ["wsgi.input"]
    attachments: dict[str, SpooledPart] = {}
    if media_type == "multipart/related":
        xml, root_type, attachments = read_multipart(
            stream, content_type, content_length, spool_dir, limits
        )
    else:
        xml = _read_body(stream, content_length, limits.max_xml_bytes)
    try:
        if media_type == "multipart/related":
            root_media = parse_content_type(root_type).get_content_type()
            if root_media not in (XOP_MEDIA_TYPE, "application/soap+xml", "text/xml"):
                raise SoapFault(
                    FaultCode.SENDER,
                    f"unsupported root part media type {root_media!r}",
                    http_status=415,
                )
        envelope = parse_xml(xml, max_depth=limits.max_depth)
        version, header, payload = _open_envelope(envelope)
        addressing = Addressing()
        if header is not None:
            _check_must_understand(header, version)
            addressing = _addressing(header)
    except BaseException:
        for part in attachments.values():
            with contextlib.suppress(FileNotFoundError):
                part.path.unlink()
        raise
    return SoapRequest(version, envelope, header, payload, addressing, attachments, spool_dir)


def _open_envelope(
    envelope: etree._Element,
) -> tuple[SoapVersion, etree._Element | None, etree._Element]:
    """Check the envelope's structure; return its version, Header and Body payload."""
    qname = etree.QName(envelope)
    if qname.localname != "Envelope":
        raise SoapFault(FaultCode.SENDER, "the document is not a SOAP envelope")
    if qname.namespace == SOAP12:
        version = SoapVersion.SOAP12
    elif qname.namespace == SOAP11:
        version = SoapVersion.SOAP11
    else:
        raise SoapFault(
            FaultCode.VERSION_MISMATCH, f"unsupported SOAP envelope namespace {qname.namespace!r}"
        )
    ns = version.ns
    children = [c for c in envelope if isinstance(c.tag, str)]
    header = None
    if children and children[0].tag == f"{{{ns}}}Header":
        header = children.pop(0)
    if not children or children[0].tag != f"{{{ns}}}Body":
        raise SoapFault(FaultCode.SENDER, "SOAP envelope without a Body")
    payload = next((c for c in children[0] if isinstance(c.tag, str)), None)
    if payload is None:
        raise SoapFault(FaultCode.SENDER, "empty SOAP Body")
    return version, header, payload


def _check_must_understand(header: etree._Element, version: SoapVersion) -> None:
    ns = version.ns
    role_attr = f"{{{ns}}}role" if version is SoapVersion.SOAP12 else f"{{{ns}}}actor"
    not_understood = []
    for block in header:
        if not isinstance(block.tag, str):
            continue
        if (block.get(f"{{{ns}}}mustUnderstand") or "").strip() not in ("true", "1"):
            continue
        if (block.get(role_attr) or "").strip() not in _OUR_ROLES:
            continue  # targeted at an intermediary we are not (SOAP 1.2 part 1, 2.2)
        qname = etree.QName(block)
        if qname.namespace in _UNDERSTOOD_NAMESPACES or block.tag in _UNDERSTOOD_HEADERS:
            continue
        not_understood.append((qname.namespace or "", qname.localname))
    if not_understood:
        names = ", ".join(f"{{{n}}}{local}" for n, local in not_understood)
        raise MustUnderstandFault(f"header blocks not understood: {names}", not_understood)


def _addressing(header: etree._Element) -> Addressing:
    values: dict[str, str] = {}
    for block in header:
        if not isinstance(block.tag, str) or etree.QName(block).namespace != WSA:
            continue
        name = etree.QName(block).localname
        if name in ("Action", "MessageID", "To", "ReplyTo"):
            if name in values:
                raise SoapFault(
                    FaultCode.SENDER,
                    f"wsa:{name} appears twice",
                    subcode=(WSA, "InvalidAddressingHeader"),
                )
            if name == "ReplyTo":
                values[name] = (block.findtext(f"{{{WSA}}}Address") or "").strip()
            else:
                values[name] = (block.text or "").strip()
    return Addressing(
        action=values.get("Action") or None,
        message_id=values.get("MessageID") or None,
        to=values.get("To") or None,
        reply_to=values.get("ReplyTo") or None,
    )


# --- responses --------------------------------------------------------------------------------


@dataclass
class WsgiResponse:
    status: str
    headers: list[tuple[str, str]]
    body: Iterable[bytes]


def _status(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Error"


def _envelope(
    version: SoapVersion, action: str | None, relates_to: str | None
) -> tuple[etree._Element, etree._Element, etree._Element]:
    """An Envelope with its WS-A reply headers; returns (envelope, header, body)."""
    ns = version.ns
    envelope = etree.Element(f"{{{ns}}}Envelope", nsmap={version.prefix: ns, "wsa": WSA})
    header = etree.SubElement(envelope, f"{{{ns}}}Header")
    if action:
        element = etree.SubElement(header, f"{{{WSA}}}Action")
        element.set(f"{{{ns}}}mustUnderstand", version.true)
        element.text = action
    etree.SubElement(header, f"{{{WSA}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
    if relates_to:
        etree.SubElement(header, f"{{{WSA}}}RelatesTo").text = relates_to
    body = etree.SubElement(envelope, f"{{{ns}}}Body")
    return envelope, header, body


_SPLICE = "dmp-xds splice point"
_SPLICE_BYTES = f"<!--{_SPLICE}-->".encode()


def splice_point() -> etree._Comment:
    """Where :func:`soap_response` inserts ``spliced`` fragments (a comment node)."""
    return etree.Comment(_SPLICE)


def soap_response(
    version: SoapVersion,
    payload: etree._Element,
    *,
    action: str | None,
    relates_to: str | None,
    attachments: Sequence[OutPart] = (),
    force_mtom: bool = False,
    spliced: Sequence[str] = (),
) -> WsgiResponse:
    """A 200 answer carrying ``payload``; MTOM when there are attachments or ``force_mtom``.

    ``payload`` is moved into the envelope (not copied). ``spliced`` XML fragments (each a
    complete element declaring its namespaces) replace the payload's :func:`splice_point`.
    Attachments are streamed lazily, so the body must be iterated (and closed) by the WSGI
    server for files to be opened and released.
    """
    envelope, _header, body = _envelope(version, action, relates_to)
    body.append(payload)
    xml = serialize(envelope)
    if spliced:
        before, mark, after = xml.partition(_SPLICE_BYTES)
        if not mark:
            raise ValueError("spliced fragments but no splice point in the payload")
        xml = before + "".join(spliced).encode("utf-8") + after
    if not attachments and not force_mtom:
        headers = [
            ("Content-Type", version.content_type(action)),
            ("Content-Length", str(len(xml))),
        ]
        return WsgiResponse(_status(200), headers, [xml])
    content_type, length, chunks = mtom_body(
        xml,
        version.media_type,
        attachments,
        action=action if version is SoapVersion.SOAP12 else None,
    )
    headers = [("Content-Type", content_type), ("Content-Length", str(length))]
    return WsgiResponse(_status(200), headers, chunks)


_SOAP11_CODES = {
    FaultCode.SENDER: "Client",
    FaultCode.RECEIVER: "Server",
    FaultCode.VERSION_MISMATCH: "VersionMismatch",
    FaultCode.MUST_UNDERSTAND: "MustUnderstand",
    FaultCode.DATA_ENCODING_UNKNOWN: "Client",
}


def fault_response(
    version: SoapVersion | None, fault: SoapFault, *, relates_to: str | None = None
) -> WsgiResponse:
    """Render ``fault`` as a SOAP fault message (SOAP 1.2 when the version is unknown).

    Subcodes are written as qualified names with their namespace declared, so a client can
    resolve e.g. ``wsse:InvalidSecurity``. SOAP 1.1 has no subcodes: as WS-Security 1.1 does,
    the subcode becomes the faultcode. The HTTP status is ``fault.http_status``, except that
    SOAP 1.1 Sender faults use 500 as WS-I Basic Profile R1126 requires.
    """
    version = version or SoapVersion.SOAP12
    ns = version.ns
    envelope, header, body = _envelope(version, WSA_FAULT_ACTION, relates_to)
    status = fault.http_status
    if version is SoapVersion.SOAP12:
        for n, (namespace, local) in enumerate(getattr(fault, "not_understood", ()) or ()):
            element = etree.SubElement(header, f"{{{ns}}}NotUnderstood", nsmap={f"n{n}": namespace})
            element.set("qname", f"n{n}:{local}")
        if fault.code is FaultCode.VERSION_MISMATCH:
            upgrade = etree.SubElement(header, f"{{{ns}}}Upgrade")
            for n, supported in enumerate((SOAP12, SOAP11)):
                element = etree.SubElement(
                    upgrade, f"{{{ns}}}SupportedEnvelope", nsmap={f"v{n}": supported}
                )
                element.set("qname", f"v{n}:Envelope")
        element = etree.SubElement(body, f"{{{ns}}}Fault")
        code = etree.SubElement(element, f"{{{ns}}}Code")
        etree.SubElement(code, f"{{{ns}}}Value").text = f"{version.prefix}:{fault.code.value}"
        if fault.subcode:
            namespace, local = fault.subcode
            prefix = _SUBCODE_PREFIXES.get(namespace, "sub")
            subcode = etree.SubElement(code, f"{{{ns}}}Subcode")
            value = etree.SubElement(subcode, f"{{{ns}}}Value", nsmap={prefix: namespace})
            value.text = f"{prefix}:{local}"
        reason = etree.SubElement(element, f"{{{ns}}}Reason")
        text = etree.SubElement(reason, f"{{{ns}}}Text")
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        text.text = fault.reason
    else:
        element = etree.SubElement(body, f"{{{ns}}}Fault")
        if fault.subcode:
            namespace, local = fault.subcode
            prefix = _SUBCODE_PREFIXES.get(namespace, "sub")
            faultcode = etree.SubElement(element, "faultcode", nsmap={prefix: namespace})
            faultcode.text = f"{prefix}:{local}"
        else:
            faultcode = etree.SubElement(element, "faultcode")
            faultcode.text = f"{version.prefix}:{_SOAP11_CODES[fault.code]}"
        etree.SubElement(element, "faultstring").text = fault.reason
        if status == 400:
            status = 500
    xml = serialize(envelope)
    headers = [
        ("Content-Type", version.content_type(WSA_FAULT_ACTION)),
        ("Content-Length", str(len(xml))),
    ]
    return WsgiResponse(_status(status), headers, [xml])


def new_message_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


__all__ = [
    "WSA_ANONYMOUS",
    "WSA_FAULT_ACTION",
    "Addressing",
    "Limits",
    "MustUnderstandFault",
    "OutPart",
    "SoapRequest",
    "SoapVersion",
    "SpooledPart",
    "WsgiResponse",
    "fault_response",
    "new_message_id",
    "read_soap_request",
    "soap_response",
]
