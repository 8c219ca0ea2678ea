"""MTOM/XOP (multipart/related) in and out, streamed.

Documents can be hundreds of megabytes, so neither direction ever holds one whole in memory:

* In: :func:`read_multipart` feeds 64 KB chunks of the request body to python-multipart's
  low-level parser; the root part (the SOAP envelope) is kept in memory up to a limit, every other
  part is written to a temporary file in the spool directory while its size, SHA-1 (what XDS
  records) and SHA-256 (the content address of the repository) are computed. The repository then
  moves the file into place with ``os.link``, so the bytes are written to disk exactly once.
* Out: :func:`mtom_body` returns an exact Content-Length and a generator that yields the root part
  and then each document in chunks, opening a file only when its turn comes.

Our own limits (body size, number of parts, part header size) are enforced here on top of
python-multipart's, because that library has had several denial-of-service advisories.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import quote, unquote

from lxml import etree
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

from ..errors import FaultCode, SoapFault
from ..namespaces import XOP

if TYPE_CHECKING:
    from .envelope import Limits

CHUNK = 64 * 1024
XOP_MEDIA_TYPE = "application/xop+xml"
# Bytes of preamble tolerated before the first boundary (RFC 2046 allows one; nobody sends much).
_MAX_PREAMBLE = 8192
# Headers per MIME part: MTOM parts carry three or four; leave room for chatty stacks.
_MAX_PART_HEADERS = 16
_PLAIN_ENCODINGS = {"", "binary", "8bit", "7bit"}


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass
class SpooledPart:
    """A received document, on disk, with what we learnt while writing it."""

    content_id: str
    content_type: str
    path: Path
    size: int
    sha1: str
    sha256: str

    def open(self) -> BinaryIO:
        return self.path.open("rb")

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()


class HashingWriter:
    """Writes a new temporary file in ``spool_dir`` and hashes everything written to it.

    Shared by the multipart reader and by inline base64 documents so that both produce identical
    :class:`SpooledPart` values.
    """

    def __init__(self, spool_dir: Path) -> None:
        fd, name = tempfile.mkstemp(dir=spool_dir, prefix="part-", suffix=".tmp")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._sha1 = hashlib.sha1(usedforsecurity=False)  # XDS metadata requires SHA-1
        self._sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self._file.write(data)
        self._sha1.update(data)
        self._sha256.update(data)
        self.size += len(data)

    def finish(self, content_id: str, content_type: str) -> SpooledPart:
        self._file.close()
        return SpooledPart(
            content_id,
            content_type,
            self.path,
            self.size,
            self._sha1.hexdigest(),
            self._sha256.hexdigest(),
        )

    def discard(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def parse_content_type(header: str) -> Message:
    """Parse a Content-Type header value; the result's ``get_content_type()`` is lower-case.

    email.message handles quoting, RFC 2231 parameters and case-insensitive parameter names,
    which hand-written splitting on ``;`` gets wrong.
    """
    message = Message()
    message["content-type"] = header or ""
    return message


def content_type_param(message: Message, name: str) -> str | None:
    value = message.get_param(name, header="content-type")
    if value is None:
        return None
    return collapse_rfc2231_value(value)  # type: ignore[arg-type]


def strip_angle(value: str) -> str:
    """Content-ID values and the ``start`` parameter are compared without their <>."""
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    return value


class _Part:
    """State of the part being parsed."""

    __slots__ = ("field", "header_bytes", "headers", "is_root", "value", "writer")

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.field = bytearray()
        self.value = bytearray()
        self.header_bytes = 0
        self.is_root = False
        self.writer: HashingWriter | None = None


class _MultipartReader:
    """Callbacks for python-multipart, collecting the root part and spooling the others."""

    def __init__(self, start: str | None, spool_dir: Path, limits: Limits) -> None:
        self.start = start
        self.spool_dir = spool_dir
        self.limits = limits
        self.header_limit = getattr(limits, "max_part_header_bytes", 8192)
        self.part: _Part | None = None
        self.parts_seen = 0
        self.root: bytearray | None = None
        self.root_content_type = ""
        self.attachments: dict[str, SpooledPart] = {}
        self.ended = False

    # python-multipart callbacks ------------------------------------------------------------
    def on_part_begin(self) -> None:
        self.parts_seen += 1
        if self.parts_seen > self.limits.max_attachments + 1:
            raise SoapFault(
                FaultCode.SENDER,
                f"too many MIME parts (at most {self.limits.max_attachments} attachments)",
            )
        self.part = _Part()

    def _count_header(self, length: int) -> None:
        assert self.part is not None
        self.part.header_bytes += length
        if self.part.header_bytes > self.header_limit:
            raise SoapFault(FaultCode.SENDER, "MIME part headers too large")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.part.field += data[start:end]  # type: ignore[union-attr]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.part.value += data[start:end]  # type: ignore[union-attr]

    def on_header_end(self) -> None:
        part = self.part
        assert part is not None
        name = part.field.decode("latin-1").strip().lower()
        part.headers[name] = part.value.decode("latin-1").strip()
        part.field.clear()
        part.value.clear()

    def on_headers_finished(self) -> None:
        part = self.part
        assert part is not None
        content_id = strip_angle(part.headers.get("content-id", ""))
        encoding = part.headers.get("content-transfer-encoding", "").strip().lower()
        if encoding not in _PLAIN_ENCODINGS:
            raise SoapFault(
                FaultCode.SENDER,
                f"Content-Transfer-Encoding {encoding!r} is not supported (MTOM parts are binary)",
            )
        if self.root is None and (content_id == self.start if self.start else self.parts_seen == 1):
            part.is_root = True
            self.root = bytearray()
            self.root_content_type = part.headers.get("content-type", "")
            return
        if not content_id:
            raise SoapFault(FaultCode.SENDER, "a MIME attachment has no Content-ID")
        if content_id in self.attachments:
            raise SoapFault(FaultCode.SENDER, f"Content-ID <{content_id}> appears twice")
        part.writer = HashingWriter(self.spool_dir)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        assert part is not None
        if part.is_root:
            assert self.root is not None
            if len(self.root) + (end - start) > self.limits.max_xml_bytes:
                raise SoapFault(
                    FaultCode.SENDER,
                    f"SOAP envelope larger than {self.limits.max_xml_bytes} bytes",
                    http_status=413,
                )
            self.root += data[start:end]
        elif part.writer is not None:
            part.writer.write(memoryview(data)[start:end])

    def on_part_end(self) -> None:
        part = self.part
        assert part is not None
        if part.writer is not None:
            content_id = strip_angle(part.headers.get("content-id", ""))
            content_type = part.headers.get("content-type", "application/octet-stream")
            self.attachments[content_id] = part.writer.finish(content_id, content_type)
            part.writer = None
        self.part = None

    def on_end(self) -> None:
        self.ended = True

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def discard(self) -> None:
        """Remove every file written so far (failure path)."""
        if self.part is not None and self.part.writer is not None:
            self.part.writer.discard()
        for spooled in self.attachments.values():
            with contextlib.suppress(FileNotFoundError):
                spooled.path.unlink()
        self.attachments.clear()


def read_multipart(
    stream: _Readable,
    content_type_header: str,
    content_length: int | None,
    spool_dir: Path,
    limits: Limits,
) -> tuple[bytes, str, dict[str, SpooledPart]]:
    """Read a multipart/related body from ``stream``.

    Returns the root part's bytes, its Content-Type, and the other parts by Content-ID (without
    <>), spooled to ``spool_dir``. With ``content_length`` None the stream is read to EOF (chunked
    request bodies). Any failure raises a Sender :class:`SoapFault` (413 for sizes) after deleting
    the files already written.
    """
    message = parse_content_type(content_type_header)
    boundary = content_type_param(message, "boundary")
    if not boundary:
        raise SoapFault(FaultCode.SENDER, "multipart Content-Type without a boundary")
    if content_length is not None and content_length > limits.max_body_bytes:
        raise SoapFault(
            FaultCode.SENDER,
            f"request body larger than {limits.max_body_bytes} bytes",
            http_status=413,
        )
    start = content_type_param(message, "start")
    reader = _MultipartReader(strip_angle(start) if start else None, spool_dir, limits)
    try:
        parser = MultipartParser(
            boundary.encode("latin-1"),
            reader.callbacks(),  # type: ignore[arg-type]
            max_header_count=_MAX_PART_HEADERS,
            max_header_size=reader.header_limit,
        )
        _feed(parser, stream, content_length, boundary.encode("latin-1"), limits)
        if not reader.ended:
            raise SoapFault(FaultCode.SENDER, "multipart body ends before its closing boundary")
        if reader.root is None:
            if start:
                raise SoapFault(
                    FaultCode.SENDER, f"no MIME part has the start Content-ID <{reader.start}>"
                )
            raise SoapFault(FaultCode.SENDER, "multipart body without any part")
        return bytes(reader.root), reader.root_content_type, dict(reader.attachments)
    except MultipartParseError as exc:
        reader.discard()
        raise SoapFault(FaultCode.SENDER, f"malformed multipart body: {exc}") from None
    except BaseException:
        reader.discard()
        raise


def body_chunks(
    stream: _Readable, content_length: int | None, limit: int, what: str
) -> Iterator[bytes]:
    """The request body in chunks of at most 64 KB: up to Content-Length, or to the end of a
    chunked body; a body longer than ``limit`` bytes is refused (413) as soon as it is seen."""
    if content_length is not None and content_length > limit:
        raise SoapFault(FaultCode.SENDER, f"{what} larger than {limit} bytes", http_status=413)
    left, total = content_length, 0
    while left is None or left > 0:
        chunk = stream.read(CHUNK if left is None else min(left, CHUNK))
        if not chunk:
            if left:
                raise SoapFault(FaultCode.SENDER, "request body shorter than its Content-Length")
            return
        total += len(chunk)
        if total > limit:
            raise SoapFault(FaultCode.SENDER, f"{what} larger than {limit} bytes", http_status=413)
        if left is not None:
            left -= len(chunk)
        yield chunk


def _feed(
    parser: MultipartParser,
    stream: _Readable,
    content_length: int | None,
    boundary: bytes,
    limits: Limits,
) -> None:
    """Copy the body into the parser in 64 KB chunks, enforcing the total size."""
    preamble: bytearray | None = bytearray()
    for chunk in body_chunks(stream, content_length, limits.max_body_bytes, "request body"):
        if preamble is not None:
            preamble += chunk
            chunk = _skip_preamble(preamble, boundary)
            if not chunk:
                continue
            preamble = None
        parser.write(chunk)
    if preamble is not None:
        raise SoapFault(FaultCode.SENDER, "multipart body does not contain its boundary")
    parser.finalize()


def _skip_preamble(buffer: bytearray, boundary: bytes) -> bytes:
    """Return the buffer from its first delimiter line on, or b"" while none is complete yet.

    python-multipart only tolerates CR/LF before the first delimiter; RFC 2046 allows any preamble.
    """
    delimiter = b"--" + boundary
    position = 0
    while True:
        found = buffer.find(delimiter, position)
        if found == -1:
            break
        if found == 0 or buffer[found - 1 : found] == b"\n":
            return bytes(buffer[found:])
        position = found + 1
    if len(buffer) > _MAX_PREAMBLE + len(delimiter):
        raise SoapFault(FaultCode.SENDER, "multipart body does not start with its boundary")
    return b""


# --- writing ----------------------------------------------------------------------------------


@dataclass
class OutPart:
    """A document to send as a MIME part. ``chunks`` is called only when the part is streamed."""

    content_id: str
    content_type: str
    size: int
    chunks: Callable[[], Iterable[bytes]]


def _header_safe(value: str, what: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"{what} contains a line break")
    return value


def _part_head(boundary: str, content_type: str, content_id: str, *, first: bool = False) -> bytes:
    """Delimiter and headers of one part. The CRLF before a delimiter belongs to the delimiter
    (RFC 2046), so every part but the first starts with one and part bodies are sent verbatim."""
    head = (
        f"--{boundary}\r\n"
        f"Content-Type: {_header_safe(content_type, 'content type')}\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        f"Content-ID: <{_header_safe(content_id, 'content id')}>\r\n\r\n"
    )
    return head.encode("latin-1") if first else b"\r\n" + head.encode("latin-1")


def mtom_body(
    root_xml: bytes,
    root_content_type: str,
    parts: Sequence[OutPart],
    *,
    action: str | None = None,
) -> tuple[str, int, Iterator[bytes]]:
    """Serialise an MTOM message: (Content-Type header, Content-Length, body chunks).

    ``root_content_type`` is the SOAP media type (``application/soap+xml`` or ``text/xml``);
    ``action`` (SOAP 1.2) is added as the ``action`` parameter of the multipart Content-Type.
    Each part must yield exactly ``size`` bytes: the Content-Length has been announced, so a
    mismatch aborts the stream rather than sending a corrupt message.
    """
    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    root_id = f"root.{uuid.uuid4().hex}@dmp-xds"
    soap_type = _header_safe(root_content_type, "SOAP media type")
    content_type = (
        f'multipart/related; boundary="{boundary}"; type="{XOP_MEDIA_TYPE}"; '
        f'start="<{root_id}>"; start-info="{soap_type}"'
    )
    if action:
        content_type += f'; action="{_header_safe(action, "action")}"'
    root_head = _part_head(
        boundary, f'{XOP_MEDIA_TYPE}; charset=UTF-8; type="{soap_type}"', root_id, first=True
    )
    heads = [_part_head(boundary, p.content_type, p.content_id) for p in parts]
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    length = len(root_head) + len(root_xml) + sum(map(len, heads)) + len(tail)
    length += sum(p.size for p in parts)

    def generate() -> Iterator[bytes]:
        yield root_head
        yield root_xml
        for head, part in zip(heads, parts, strict=True):
            yield head
            sent = 0
            chunks = part.chunks()
            try:
                for chunk in chunks:
                    sent += len(chunk)
                    if sent > part.size:
                        raise RuntimeError(f"part <{part.content_id}> is longer than announced")
                    if chunk:
                        yield chunk
            finally:
                # Release the file now, also when the client disconnects mid-stream.
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            if sent != part.size:
                raise RuntimeError(f"part <{part.content_id}> is shorter than announced")
        yield tail

    return content_type, length, generate()


def file_chunks(path: Path) -> Callable[[], Iterator[bytes]]:
    """A lazy ``OutPart.chunks`` for a file: opened when streaming starts, closed at the end."""

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as handle:
            while block := handle.read(CHUNK):
                yield block

    return chunks


# --- XOP references ---------------------------------------------------------------------------

_CID_SAFE = "@!$&'()*+,;=:~"


def xop_include(parent: etree._Element, content_id: str) -> None:
    """Append ``<xop:Include href="cid:...">`` referring to the part ``content_id``."""
    etree.SubElement(
        parent,
        f"{{{XOP}}}Include",
        {"href": "cid:" + quote(content_id, safe=_CID_SAFE)},
        nsmap={"xop": XOP},
    )


def element_content(element: etree._Element) -> tuple[str | None, bytes | None]:
    """What an element carrying a document holds: ``(content_id, None)`` for an xop:Include,
    ``(None, bytes)`` for inline base64, ``(None, None)`` when it is empty.

    Raises ValueError for inline text that is not strict base64.
    """
    include = element.find(f"{{{XOP}}}Include")
    if include is not None:
        return cid_from_href(include.get("href", "")), None
    text = "".join((element.text or "").split())
    if not text:
        return None, None
    try:
        return None, base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("invalid base64 content") from None


def cid_from_href(href: str) -> str:
    """The Content-ID an ``xop:Include/@href`` refers to (RFC 2392: ``cid:`` + URL-encoding)."""
    href = href.strip()
    if href[:4].lower() == "cid:":
        href = href[4:]
    return unquote(href)
