"""Large documents through ITI-41 and ITI-43 (MTOM): time, throughput and the server worker's
memory, for 1, 10 and 50 MB.

Two kinds per size: a raw PDF (``application/pdf``: stored as it is) and the same PDF embedded
base64 in a CDA R2 ``nonXMLBody`` (``text/xml``, as the DMP receives scanned and PDF reports:
the server reads its header and checks that the whole document is well-formed XML before
storing it). The claim under test: the server's memory stays flat whatever the size, because
attachments are streamed to disk while hashed and the CDA is read by a streaming parser.

    python -m benchmarks large_documents [--sizes 1,10,50] [--repeat 3] [--workers 2]

Memory is measured two ways on the gunicorn workers: ``rss_delta_mb`` is the largest resident
set seen (sampled every 5 ms) during the request minus the resident set just before it, which
isolates the request's own cost; ``worker_hwm_mb`` is the kernel's high-water mark (VmHWM)
after the phase, which includes the worker's baseline (imports, lxml, SQLAlchemy).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dmp_xds.client.xds import XdsClient

from .harness import REPOSITORY_UID, BenchServer, report, server, vihf

MIB = 1024 * 1024


# -- security ------------------------------------------------------------------------------------
# The server refuses unsigned calls once the VIHF layer is on. With the test PKI available, the
# benchmark points the server at it and every client call carries a freshly signed VIHF; this is
# the only place that knows about it.


def _test_pki(directory: Path) -> Any | None:
    try:
        from dmp_xds.security.pki import init_test_pki
    except ImportError:  # a tree without the VIHF layer: plain calls
        return None
    return init_test_pki(directory)


def _client(url: str, patient_id: str, pki: Any | None) -> XdsClient:
    """The benchmark's client, acting for ``patient_id``."""
    headers = vihf(pki, patient_id) if pki is not None else None
    return XdsClient(url, header_factory=headers, timeout=600)


# -- documents -----------------------------------------------------------------------------------


def _pdf(path: Path, size: int) -> None:
    """A PDF-looking file of ``size`` bytes (incompressible filler, as scanned pages are)."""
    with open(path, "wb") as f:
        f.write(b"%PDF-1.4\n")
        left = size - 9 - 6
        while left > 0:
            chunk = os.urandom(min(MIB, left))
            f.write(chunk)
            left -= len(chunk)
        f.write(b"%%EOF\n")


def _cda_around(pdf: Path, path: Path, template: bytes) -> None:
    """``template`` (a rendered CDA with a nonXMLBody) with its base64 text replaced by ``pdf``."""
    start = template.index(b'representation="B64">') + len(b'representation="B64">')
    end = template.index(b"</text>", start)
    with open(path, "wb") as out, open(pdf, "rb") as src:
        out.write(template[:start] + b"\n")
        while chunk := src.read(57 * 16 * 1024):  # a multiple of 57: whole base64 lines
            out.write(base64.encodebytes(chunk))
        out.write(template[end:])


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# -- memory sampling -----------------------------------------------------------------------------


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


@contextlib.contextmanager
def _sampled(srv: BenchServer) -> Iterator[dict[str, float]]:
    """Largest increase of any worker's resident set over its value at the start, in MiB."""
    pids = srv.worker_pids()
    base = {pid: _rss_kib(pid) for pid in pids}
    peak = dict(base)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid in pids:
                peak[pid] = max(peak[pid], _rss_kib(pid))
            stop.wait(0.005)

    result: dict[str, float] = {}
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result["rss_delta_mb"] = max((peak[p] - base[p] for p in pids), default=0) / 1024


def _timed(srv: BenchServer, action: Callable[[], None]) -> tuple[float, float]:
    with _sampled(srv) as memory:
        started = time.perf_counter()
        action()
        elapsed = time.perf_counter() - started
    return elapsed, memory["rss_delta_mb"]


# -- the scenario --------------------------------------------------------------------------------


def _document(kind: str, patient_id: str, size: int, tmp: Path) -> tuple[Any, Path]:
    """Fresh bytes every time (no deduplication), and the metadata that describe them."""
    from tests.fixtures.clinical_documents import header_for, matching_doc, render
    from tests.fixtures.metadata import Doc

    pdf = tmp / "document.pdf"
    _pdf(pdf, size)
    if kind == "pdf":
        return Doc(b"", mime_type="application/pdf"), pdf
    header = header_for("cr-imagerie-pdf", patient_id)
    doc = matching_doc("cr-imagerie-pdf", header)
    doc.content = b""  # the bytes go from the file, not from memory
    body = tmp / "document.xml"
    _cda_around(pdf, body, render("cr-imagerie-pdf", header))
    pdf.unlink()
    return doc, body


def _one(
    srv: BenchServer,
    client: XdsClient,
    patient_id: str,
    kind: str,
    size_mb: int,
    repeat: int,
    tmp: Path,
) -> list[dict[str, object]]:
    from tests.fixtures.metadata import submit_objects_request

    uploads: list[tuple[float, float]] = []
    downloads: list[tuple[float, float]] = []
    size = 0
    for _ in range(repeat):
        doc, body = _document(kind, patient_id, size_mb * MIB, tmp)
        size, digest = body.stat().st_size, _sha256(body)
        request = submit_objects_request(patient_id, [doc])
        outcome: dict[str, Any] = {}

        def upload(request: Any = request, body: Path = body, outcome: dict = outcome) -> None:
            outcome["result"] = client.provide_and_register(request, {"Document01": body})

        uploads.append(_timed(srv, upload))
        assert outcome["result"].status == "Success", outcome["result"].errors

        def download(uid: str = doc.unique_id, outcome: dict = outcome) -> None:
            outcome["got"] = client.retrieve([(REPOSITORY_UID, uid)])

        downloads.append(_timed(srv, download))
        content = outcome["got"].documents[0].content
        assert len(content) == size and hashlib.sha256(content).hexdigest() == digest
        del content, outcome["got"]
        body.unlink()
    rows = []
    for transaction, samples in (("ITI-41", uploads), ("ITI-43", downloads)):
        times = sorted(s for s, _ in samples)
        rows.append(
            {
                "kind": kind,
                "size_mb": round(size / MIB, 1),
                "transaction": transaction,
                "n": len(samples),
                "best_s": times[0],
                "median_s": times[len(times) // 2],
                "mb_per_s": size / MIB / times[len(times) // 2],
                "rss_delta_mb": max(m for _, m in samples),
                "worker_hwm_mb": srv.peak_rss_mb(),
            }
        )
    return rows


def run(srv: BenchServer, pki: Any | None, sizes: Sequence[int], repeat: int) -> list[dict]:
    from tests.fixtures.metadata import new_patient_id

    patient_id = new_patient_id()
    srv.new_patient(patient_id)
    client = _client(srv.url, patient_id, pki)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="dmp-xds-bench-docs-") as tmp:
        for size_mb in sizes:
            for kind in ("pdf", "cda-n1"):
                rows += _one(srv, client, patient_id, kind, size_mb, repeat, Path(tmp))
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks large_documents")
    parser.add_argument("--sizes", default="1,10,50", help="comma-separated sizes in MiB")
    parser.add_argument("--repeat", type=int, default=3, help="uploads and retrievals per size")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="dmp-xds-bench-pki-") as pki_dir:
        pki = _test_pki(Path(pki_dir))
        extra_env = pki.server_env() if pki is not None else {}
        with server(workers=args.workers, extra_env=extra_env) as srv:
            rows = run(srv, pki, sizes, args.repeat)
    report("large_documents", rows)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
