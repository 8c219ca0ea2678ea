"""Streaming multipart/related in and out: exact bytes, hashes, limits, flat memory."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from dmp_xds.errors import FaultCode, SoapFault
from dmp_xds.namespaces import XOP
from dmp_xds.soap.envelope import Limits
from dmp_xds.soap.mtom import OutPart, cid_from_href, mtom_body, read_multipart, xop_include

LIMITS = Limits(max_body_bytes=64 * 1024**2, max_xml_bytes=1024**2, max_attachments=10)
ROOT = (
    b'<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body/></env:Envelope>'
)
ROOT_TYPE = 'application/xop+xml; charset=UTF-8; type="application/soap+xml"'
# Starts and ends with CRLF, holds a look-alike delimiter and lone CR/LF: all must survive.
TRICKY = b"\r\n--MIMEBoundary_fake\r\n\r\n--bound\rX\n--boundar\r\n\x00\xff binary \r\n"


class Trickle:
    """A WSGI-like input stream that answers reads with small, irregular pieces."""

    def __init__(self, data: bytes, sizes: tuple[int, ...] = (1, 7, 64, 3, 1000)) -> None:
        self.data = data
        self.position = 0
        self.sizes = sizes
        self.calls = 0

    def read(self, size: int = -1) -> bytes:
        step = self.sizes[self.calls % len(self.sizes)]
        self.calls += 1
        if size >= 0:
            step = min(step, size)
        chunk = self.data[self.position : self.position + step]
        self.position += len(chunk)
        return chunk


def multipart(
    parts: list[tuple[dict[str, str], bytes]], boundary: str = "bound", close: bool = True
) -> bytes:
    out = b""
    for headers, body in parts:
        out += f"--{boundary}\r\n".encode()
        out += "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
        out += b"\r\n" + body + b"\r\n"
    if close:
        out += f"--{boundary}--\r\n".encode()
    return out


def root_part(content_id: str = "<root@x>") -> tuple[dict[str, str], bytes]:
    return {"Content-Type": ROOT_TYPE, "Content-ID": content_id}, ROOT


def doc_part(content_id: str, body: bytes) -> tuple[dict[str, str], bytes]:
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Transfer-Encoding": "binary",
        "Content-ID": f"<{content_id}>",
    }
    return headers, body


def read(data: bytes, content_type: str, tmp_path: Path, *, length: bool = True, **kw: object):
    limits = kw.pop("limits", LIMITS)
    stream = Trickle(data) if kw.pop("trickle", False) else io.BytesIO(data)
    return read_multipart(stream, content_type, len(data) if length else None, tmp_path, limits)


CT = 'multipart/related; boundary="bound"; type="application/xop+xml"; start="<root@x>"'


def test_root_found_by_start_parameter_anywhere(tmp_path: Path) -> None:
    data = multipart([doc_part("doc1@x", b"one"), root_part(), doc_part("doc2@x", TRICKY)])
    root, root_type, parts = read(data, CT, tmp_path)
    assert root == ROOT
    assert root_type == ROOT_TYPE
    assert set(parts) == {"doc1@x", "doc2@x"}
    assert parts["doc1@x"].read_bytes() == b"one"
    assert parts["doc2@x"].read_bytes() == TRICKY
    assert parts["doc2@x"].size == len(TRICKY)
    assert parts["doc2@x"].sha1 == hashlib.sha1(TRICKY, usedforsecurity=False).hexdigest()
    assert parts["doc2@x"].sha256 == hashlib.sha256(TRICKY).hexdigest()
    assert parts["doc2@x"].content_type == "application/octet-stream"
    assert parts["doc2@x"].path.parent == tmp_path
    with parts["doc1@x"].open() as handle:
        assert handle.read() == b"one"


def test_without_start_the_first_part_is_the_root(tmp_path: Path) -> None:
    data = multipart([root_part("<whatever>"), doc_part("d@x", b"x")])
    root, _, parts = read(data, 'multipart/related; boundary="bound"', tmp_path)
    assert root == ROOT
    assert list(parts) == ["d@x"]


def test_content_type_is_case_insensitive_and_boundary_may_be_unquoted(tmp_path: Path) -> None:
    data = multipart([root_part(), doc_part("d@x", b"x")], boundary="b-1=2")
    content_type = 'Multipart/Related; TYPE="application/xop+xml"; Boundary="b-1=2"; START=<root@x>'
    root, _, parts = read(data, content_type, tmp_path)
    assert root == ROOT and parts["d@x"].read_bytes() == b"x"
    data = multipart([root_part(), doc_part("d@x", b"y")], boundary="plain_boundary")
    root, _, parts = read(data, "MULTIPART/RELATED; boundary=plain_boundary", tmp_path)
    assert parts["d@x"].read_bytes() == b"y"


def test_chunked_input_read_to_eof(tmp_path: Path) -> None:
    data = multipart([root_part(), doc_part("d@x", TRICKY * 50)])
    root, _, parts = read(data, CT, tmp_path, length=False, trickle=True)
    assert root == ROOT
    assert parts["d@x"].read_bytes() == TRICKY * 50


def test_preamble_and_epilogue_are_ignored(tmp_path: Path) -> None:
    data = b"This is a MIME preamble.\r\n" + multipart([root_part()]) + b"epilogue\r\n"
    root, _, parts = read(data, CT, tmp_path)
    assert root == ROOT and parts == {}


def test_twenty_megabytes_with_flat_memory(tmp_path: Path) -> None:
    size = 20 * 1024**2
    block = bytes(range(256)) * 256  # 64 KB

    class Generated:
        """Produces the body on the fly: never 20 MB in memory on the sending side either."""

        def __init__(self) -> None:
            head = multipart([root_part()], close=False)
            head += b"--bound\r\nContent-Type: application/pdf\r\nContent-ID: <big@x>\r\n\r\n"
            self.pieces = self._pieces(head)
            self.pending = b""

        @staticmethod
        def _pieces(head: bytes) -> Iterator[bytes]:
            yield head
            for _ in range(size // len(block)):
                yield block
            yield b"\r\n--bound--\r\n"

        def read(self, n: int = -1) -> bytes:
            if not self.pending:
                self.pending = next(self.pieces, b"")
            chunk, self.pending = self.pending[:n], self.pending[n:]
            return chunk

    expected_sha1 = hashlib.sha1(usedforsecurity=False)
    for _ in range(size // len(block)):
        expected_sha1.update(block)
    tracemalloc.start()
    try:
        _, _, parts = read_multipart(Generated(), CT, None, tmp_path, LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parts["big@x"].size == size
    assert parts["big@x"].sha1 == expected_sha1.hexdigest()
    assert parts["big@x"].path.stat().st_size == size
    assert peak < 5 * 1024**2, f"peak {peak} bytes"


def faults(data: bytes, tmp_path: Path, content_type: str = CT, **kw: object) -> SoapFault:
    with pytest.raises(SoapFault) as info:
        read(data, content_type, tmp_path, **kw)
    assert info.value.code is FaultCode.SENDER
    assert list(tmp_path.iterdir()) == [], "spooled files must be deleted on failure"
    return info.value


def test_too_many_parts(tmp_path: Path) -> None:
    parts = [root_part()] + [doc_part(f"d{n}@x", b"x") for n in range(11)]
    assert "too many" in faults(multipart(parts), tmp_path).reason
    # exactly the limit is fine
    read(multipart(parts[:11]), CT, tmp_path)


def test_oversized_body_is_413_whether_announced_or_chunked(tmp_path: Path) -> None:
    limits = Limits(max_body_bytes=10_000, max_xml_bytes=5_000, max_attachments=10)
    data = multipart([root_part(), doc_part("d@x", b"x" * 20_000)])
    assert faults(data, tmp_path, limits=limits).http_status == 413
    assert faults(data, tmp_path, limits=limits, length=False).http_status == 413
    big_root = multipart([({"Content-ID": "<root@x>"}, b"<a>" + b"x" * 6000 + b"</a>")])
    assert faults(big_root, tmp_path, limits=limits).http_status == 413


def test_truncated_multipart(tmp_path: Path) -> None:
    data = multipart([root_part(), doc_part("d@x", b"x" * 1000)], close=False)
    assert "closing boundary" in faults(data, tmp_path, length=False).reason
    full = multipart([root_part(), doc_part("d@x", b"x" * 1000)])
    # Content-Length promises more than arrives
    with pytest.raises(SoapFault):
        read_multipart(io.BytesIO(full[:-100]), CT, len(full), tmp_path, LIMITS)
    assert list(tmp_path.iterdir()) == []


def test_malformed_or_incomplete_multiparts(tmp_path: Path) -> None:
    assert "boundary" in faults(b"garbage without boundary" * 1000, tmp_path).reason
    assert "boundary" in faults(b"--other\r\n\r\nx\r\n--other--\r\n", tmp_path).reason
    faults(multipart([root_part()]), tmp_path, content_type="multipart/related")
    faults(multipart([doc_part("d@x", b"x")]), tmp_path)  # start names no part
    faults(multipart([root_part(), ({"Content-Type": "a/b"}, b"no id")]), tmp_path)
    faults(multipart([root_part(), doc_part("d@x", b"1"), doc_part("d@x", b"2")]), tmp_path)
    encoded = ({"Content-ID": "<e@x>", "Content-Transfer-Encoding": "base64"}, b"eA==")
    faults(multipart([root_part(), encoded]), tmp_path)


def test_part_header_size_is_limited(tmp_path: Path) -> None:
    huge = ({"Content-ID": "<h@x>", "X-Padding": "p" * 10_000}, b"x")
    faults(multipart([root_part(), huge]), tmp_path)
    many = ({"Content-ID": "<m@x>", **{f"X-{n}": "v" for n in range(40)}}, b"x")
    faults(multipart([root_part(), many]), tmp_path)


def test_writer_reader_round_trip_is_byte_identical(tmp_path: Path) -> None:
    payloads = {"a@x": TRICKY, "b@x": b"", "c@x": b"\r\n", "d@x": TRICKY * 1000}
    opened: list[str] = []

    def lazy(content_id: str, data: bytes):
        def chunks() -> Iterator[bytes]:
            opened.append(content_id)
            for i in range(0, len(data), 1000):
                yield data[i : i + 1000]

        return chunks

    parts = [OutPart(cid, "application/pdf", len(d), lazy(cid, d)) for cid, d in payloads.items()]
    content_type, length, chunks = mtom_body(b"<root/>", "application/soap+xml", parts)
    assert opened == [], "nothing is read before the body is streamed"
    body = b"".join(chunks)
    assert len(body) == length
    assert opened == list(payloads)
    assert 'type="application/xop+xml"' in content_type
    assert 'start-info="application/soap+xml"' in content_type
    assert body.startswith(b"--MIMEBoundary_")
    root, root_type, received = read_multipart(Trickle(body), content_type, None, tmp_path, LIMITS)
    assert root == b"<root/>"
    assert root_type == 'application/xop+xml; charset=UTF-8; type="application/soap+xml"'
    for cid, data in payloads.items():
        assert received[cid].read_bytes() == data
        assert received[cid].sha256 == hashlib.sha256(data).hexdigest()
        assert received[cid].content_type == "application/pdf"
    assert b"Content-Transfer-Encoding: binary" in body


def test_writer_action_parameter_and_size_mismatch() -> None:
    content_type, _, _ = mtom_body(b"<r/>", "application/soap+xml", [], action="urn:a")
    assert content_type.endswith('; action="urn:a"')
    wrong = OutPart("w@x", "application/pdf", 5, lambda: [b"abc"])
    _, _, chunks = mtom_body(b"<r/>", "application/soap+xml", [wrong])
    with pytest.raises(RuntimeError, match="shorter"):
        b"".join(chunks)
    with pytest.raises(ValueError):
        mtom_body(b"<r/>", "application/soap+xml", [OutPart("x\r\nEvil: 1", "a/b", 0, list)])


def test_xop_include_and_cid_href_round_trip() -> None:
    parent = etree.Element("Document")
    xop_include(parent, "doc 1/é%@example.org")
    include = parent[0]
    assert include.tag == f"{{{XOP}}}Include"
    href = include.get("href")
    assert href.startswith("cid:") and " " not in href
    assert "@example.org" in href
    assert cid_from_href(href) == "doc 1/é%@example.org"
    assert cid_from_href(" CID:a%40b ") == "a@b"
