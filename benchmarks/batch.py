"""An EAI batch (issue 7, scenario 4): one ITI-41 submission set of 1,000 documents of 20 KB
(real CDA R2 whose headers match their metadata) for one patient. Targets: answered in <= 5 s,
peak server memory <= 500 MB.

    python -m benchmarks batch [--documents 1000] [--size-kb 20] [--repeat 3] [--workers 2]
                               [--import]

Per submission: the client's wall time from sending to the answer (the request is built and
signed before the timer starts), the server's own duration (request log), the CPU gunicorn and
PostgreSQL spent on it, and the memory of the worker that served it: ``worker_peak_rss_mb`` is
its VmHWM after the request (baseline included: this is the figure the target is about),
``rss_growth_mb`` its peak minus its resident set before the request (peaks reset with Linux
``clear_refs`` just before).

``--import`` also times ``dmp-xds import`` of the same kind of batch from a folder of 1,000
CDA files (a separate process, ``--batch-size`` = the number of documents: one submission set):
metadata read from each CDA header, journal written, one ITI-41.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dmp_xds.client.xds import XdsClient

from .harness import BenchServer, report, server, vihf

PNR = "ProvideAndRegisterDocumentSet-b"


def _memory_before(srv: BenchServer) -> dict[int, int]:
    idle = {pid: rss for pid, (rss, _) in srv.worker_memory_kib().items()}
    srv.reset_peak_rss()
    return idle


def _memory_after(srv: BenchServer, idle: dict[int, int]) -> tuple[float, float]:
    """(VmHWM of the worker that grew most, its growth) in MiB."""
    growth, hwm = 0, 0
    for pid, (_, peak) in srv.worker_memory_kib().items():
        if pid in idle and peak - idle[pid] >= growth:
            growth, hwm = peak - idle[pid], peak
    return hwm / 1024, growth / 1024


def _measured(srv: BenchServer, action: Any) -> dict[str, Any]:
    """Run ``action()``; what it cost the server."""
    offset = srv.log_offset()
    idle = _memory_before(srv)
    app_cpu, pg_cpu = srv.cpu_s(), srv.postgres_cpu_s()
    started = time.perf_counter()
    outcome = action()
    seconds = time.perf_counter() - started
    app_cpu = srv.cpu_s() - app_cpu
    pg_after = srv.postgres_cpu_s()
    hwm, growth = _memory_after(srv, idle)
    durations = srv.request_durations(offset, PNR)
    return {
        "outcome": outcome,
        "seconds": seconds,
        "server_s": sum(durations),
        "requests": len(durations),
        "app_cpu_s": app_cpu,
        "pg_cpu_s": None if pg_cpu is None or pg_after is None else pg_after - pg_cpu,
        "worker_peak_rss_mb": hwm,
        "rss_growth_mb": growth,
    }


def one_batch(srv: BenchServer, pki: Any, documents: int, size: int) -> dict[str, object]:
    from tests.fixtures.metadata import new_patient_id, submit_objects_request

    from .cda20k import cda_doc_of_size

    patient = new_patient_id()
    srv.new_patient(patient)
    built = time.perf_counter()
    docs = [cda_doc_of_size(patient, size) for _ in range(documents)]
    request = submit_objects_request(patient, docs)
    contents = {d.symbolic_id: d.content for d in docs}
    build_s = time.perf_counter() - built
    client = XdsClient(srv.url, header_factory=vihf(pki, patient), timeout=600)

    def submit() -> Any:
        return client.provide_and_register(request, contents)

    m = _measured(srv, submit)
    result = m.pop("outcome")
    assert result.status.endswith("Success"), result.errors[:5]
    return {
        "path": "ITI-41 (XdsClient)",
        "documents": documents,
        "payload_mb": sum(len(c) for c in contents.values()) / 1e6,
        "client_build_s": build_s,
        **m,
    }


def one_import(
    srv: BenchServer, pki_dir: str, pki: Any, documents: int, size: int
) -> dict[str, object]:
    """``dmp-xds import`` of a folder of ``documents`` CDA files, as one submission set."""
    from tests.fixtures.metadata import new_patient_id

    from .cda20k import cda_doc_of_size

    patient = new_patient_id()
    srv.new_patient(patient)
    with tempfile.TemporaryDirectory(prefix="dmp-xds-bench-import-") as tmp:
        folder = Path(tmp) / "batch"
        folder.mkdir()
        for n in range(documents):
            (folder / f"doc{n:05d}.xml").write_bytes(cda_doc_of_size(patient, size).content)
        command = [
            sys.executable,
            "-m",
            "dmp_xds.cli",
            "import",
            str(folder),
            "--batch-size",
            str(documents),
            "--journal",
            str(Path(tmp) / "journal.jsonl"),
            "--url",
            srv.url,
            "--pki",
            pki_dir,
            "--timeout",
            "600",
            "--json",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DMP_XDS_")}

        def run_import() -> Any:
            return subprocess.run(command, capture_output=True, text=True, env=env, check=False)

        m = _measured(srv, run_import)
    done = m.pop("outcome")
    if done.returncode != 0:
        raise RuntimeError(f"dmp-xds import failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout)
    assert summary["counts"]["accepted"] == documents, summary["counts"]
    return {
        "path": "dmp-xds import",
        "documents": documents,
        "batches": summary["batches"],
        "importer_s": summary["seconds"],
        **m,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks batch")
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--size-kb", type=int, default=20, help="CDA size in KB (>= 8)")
    parser.add_argument("--repeat", type=int, default=3, help="batches per path")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--import", dest="importer", action="store_true", help="also time `dmp-xds import`"
    )
    args = parser.parse_args(argv)
    from dmp_xds.security.pki import init_test_pki

    size = args.size_kb * 1000
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="dmp-xds-bench-pki-") as pki_dir:
        pki = init_test_pki(Path(pki_dir))
        with server(args.workers, pki.server_env()) as srv:
            one_batch(srv, pki, 20, size)  # warm-up: imports and first-call caches
            for _ in range(args.repeat):
                rows.append(one_batch(srv, pki, args.documents, size))
            if args.importer:
                for _ in range(args.repeat):
                    rows.append(one_import(srv, pki_dir, pki, args.documents, size))
    report("batch", rows)
    return 0
