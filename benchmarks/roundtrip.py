"""ITI-41 -> ITI-18 -> ITI-43 latency and throughput for small CDA-sized documents, sequential
and with concurrent clients (each in its own process, so the client's Python does not share the
server's cores' GIL).

    python -m benchmarks roundtrip [--n 200] [--clients 1,4] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from dmp_xds.client.xds import XdsClient
from dmp_xds.metadata import vocabulary as v

from .harness import REPOSITORY_UID, BenchServer, report, server, summarise, vihf

# A real CDA R2 (7.5 KB lettre de liaison) whose header matches its metadata: the server checks.
DOCUMENT_KIND = "ldl-ses"


def _client(url: str, patient_id: str, pki_dir: str) -> XdsClient:
    """The benchmark's client, acting for ``patient_id``: a freshly signed VIHF per call."""
    from dmp_xds.security.pki import load_test_pki

    return XdsClient(url, header_factory=vihf(load_test_pki(Path(pki_dir)), patient_id))


def _worker(url: str, patient_id: str, n: int, pki_dir: str) -> dict[str, list[float]]:
    from tests.fixtures.clinical_documents import cda_doc
    from tests.fixtures.metadata import submit_objects_request

    client = _client(url, patient_id, pki_dir)
    timings: dict[str, list[float]] = {"ITI-41": [], "ITI-18": [], "ITI-43": []}
    for _ in range(n):
        doc = cda_doc(DOCUMENT_KIND, patient_id)
        started = time.perf_counter()
        result = client.provide_and_register(
            submit_objects_request(patient_id, [doc]), {"Document01": doc.content}
        )
        timings["ITI-41"].append(time.perf_counter() - started)
        assert result.status == "Success", result.errors
        started = time.perf_counter()
        found = client.stored_query(
            v.FIND_DOCUMENTS,
            {"$XDSDocumentEntryPatientId": patient_id, "$XDSDocumentEntryStatus": [v.APPROVED]},
        )
        timings["ITI-18"].append(time.perf_counter() - started)
        assert found.status == "Success"
        started = time.perf_counter()
        got = client.retrieve([(REPOSITORY_UID, doc.unique_id)])
        timings["ITI-43"].append(time.perf_counter() - started)
        assert got.documents[0].content == doc.content
    return timings


def run(srv: BenchServer, n: int, clients: int, pki_dir: str) -> list[dict[str, object]]:
    from tests.fixtures.metadata import new_patient_id

    patients = [new_patient_id() for _ in range(clients)]
    for pid in patients:
        srv.new_patient(pid)
    per_client = max(1, n // clients)
    started = time.perf_counter()
    with ProcessPoolExecutor(clients) as pool:
        parts = list(
            pool.map(
                _worker,
                [srv.url] * clients,
                patients,
                [per_client] * clients,
                [pki_dir] * clients,
            )
        )
    elapsed = time.perf_counter() - started
    rows = []
    for transaction in ("ITI-41", "ITI-18", "ITI-43"):
        samples = [s for part in parts for s in part[transaction]]
        rows.append(
            {
                "transaction": transaction,
                "clients": clients,
                **summarise(samples),
                "round_trips_per_s": clients * per_client / elapsed,
                "server_peak_rss_mb": srv.peak_rss_mb(),
            }
        )
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks roundtrip")
    parser.add_argument("--n", type=int, default=200, help="round trips in all, per setting")
    parser.add_argument("--clients", default="1,4", help="comma-separated client counts")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args(argv)
    rows: list[dict[str, object]] = []
    from dmp_xds.security.pki import init_test_pki

    with tempfile.TemporaryDirectory(prefix="dmp-xds-bench-pki-") as pki_dir:
        pki = init_test_pki(Path(pki_dir))  # the server trusts it; clients sign with it
        with server(workers=args.workers, extra_env=pki.server_env()) as srv:
            for clients in (int(c) for c in args.clients.split(",")):
                rows += run(srv, args.n, clients, pki_dir)
    report("roundtrip", rows)
    return 0
