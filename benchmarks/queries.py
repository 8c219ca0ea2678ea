"""ITI-18 on a registry of a million documents: FindDocuments (LeafClass) for patients with 50
documents, and GetDocuments by uniqueId, from N client processes, a freshly signed VIHF per
query. Also captures EXPLAIN (ANALYZE, BUFFERS) of the SQL the server runs for both.

    python -m benchmarks queries [--documents 1000000] [--patients 50000] [--clients 1,8,32]
                                 [--seconds 10] [--workers 2]   # --workers 1,2: both
                                 [--prepared 8000]

By default each client builds and signs its queries before the window and only sends them in
it (checking each answer's status and document count), so that the server, not the clients'
RSA signing and LeafClass parsing, has the machine's cores; ``--prepared 0`` builds and signs
each query in the window.

The registry is filled by ``registry/synthetic.py`` (COPY). With ``DMP_XDS_DATABASE_URL`` set to
a database that already holds at least ``--documents`` documents, the load is skipped, so that a
1 M registry is loaded once and measured many times.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from dmp_xds.client.xds import XdsClient, adhoc_query_request
from dmp_xds.metadata import vocabulary as v
from dmp_xds.metadata.datatypes import parse_patient_id
from dmp_xds.registry.database import make_engine
from dmp_xds.registry.queries import patient_key, run_stored_query
from dmp_xds.registry.query_params import read_query_request
from dmp_xds.registry.synthetic import load_synthetic

from .harness import (
    READER_ID,
    BenchServer,
    capture,
    database,
    drive,
    open_all_records,
    post_prepared,
    report,
    server,
    succeeded,
    summarise,
    vihf,
)


def _find(patient_id: str) -> tuple[str, dict[str, Any]]:
    return v.FIND_DOCUMENTS, {
        "$XDSDocumentEntryPatientId": patient_id,
        "$XDSDocumentEntryStatus": [v.APPROVED],
    }


def _get(unique_id: str) -> tuple[str, dict[str, Any]]:
    return v.GET_DOCUMENTS, {"$XDSDocumentEntryUniqueId": [unique_id]}


def _query(pki: Any, kind: str, patient_id: str, unique_id: str) -> Callable[[XdsClient], Any]:
    """One stored query as a call on a client (its VIHF signed when the call runs)."""
    query_id, params = _find(patient_id) if kind == "FindDocuments" else _get(unique_id)

    def call(client: XdsClient) -> Any:
        client.header_factory = vihf(pki, patient_id)
        return client.stored_query(query_id, params)

    return call


_DOCUMENT = re.compile(rb"<(?:[\w.-]+:)?ExtrinsicObject[\s>]")


def _worker(
    start: Callable[[], object],
    url: str,
    pki_dir: str,
    kind: str,
    targets: list[tuple[str, str]],
    seconds: float,
    seed: int,
    prepared: int,
) -> tuple[list[float], float, float]:
    """Query for ``seconds`` once every client is ready; return the latency of each call and
    the wall-clock window of the calls (process start-up and preparation excluded from the
    throughput). With ``prepared`` > 0 the queries (and their VIHFs) are built before the
    window and only sent in it; otherwise each is built and signed in the window."""
    from dmp_xds.security.pki import load_test_pki

    pki = load_test_pki(Path(pki_dir))
    rng = random.Random(seed)
    client = XdsClient(url)
    expected = 50 if kind == "FindDocuments" else 1

    def live() -> float:
        call = _query(pki, kind, *rng.choice(targets))
        started = time.perf_counter()
        result = call(client)
        elapsed = time.perf_counter() - started
        assert result.status == "Success", result.errors
        assert len(result.objects) == expected, (kind, len(result.objects))
        return elapsed

    def accept(body: bytes) -> bool:
        return succeeded(body) and len(_DOCUMENT.findall(body)) == expected

    live()  # connection, imports, first-call caches
    ready = capture([_query(pki, kind, *rng.choice(targets)) for _ in range(prepared)])
    start()
    window_start = time.time()
    if ready:
        return post_prepared(url, ready, seconds, accept), window_start, time.time()
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        samples.append(live())
    return samples, window_start, time.time()


def prepare(database_url: str, documents: int, patients: int) -> dict[str, Any]:
    """Load (unless already there) and pick the query targets."""
    engine = make_engine(database_url, pool_size=1)
    facts: dict[str, Any] = {}
    with engine.connect() as conn:
        present = conn.execute(
            text("SELECT reltuples::bigint FROM pg_class WHERE relname = 'document_entry'")
        ).scalar_one()
    if present < documents * 0.95:
        loaded = load_synthetic(
            engine,
            documents,
            patients,
            heavy_patients=max(1, patients // 50),
            authorise=[READER_ID],
        )
        facts["load"] = {
            "documents": loaded.documents,
            "patients": loaded.patients,
            "rows": loaded.rows,
            "seconds": round(loaded.seconds, 1),
            "rows_per_s": round(loaded.rows_per_s),
            "documents_per_s": round(loaded.documents / loaded.seconds),
            "analyze_s": round(loaded.analyze_seconds, 1),
        }
    facts["records_opened"] = open_all_records(database_url)  # registries loaded before #5
    with engine.connect() as conn:
        facts["documents_in_registry"] = conn.execute(
            text("SELECT count(*) FROM document_entry")
        ).scalar_one()
        heavy = conn.execute(
            text(
                "SELECT p.patient_id FROM patient p JOIN LATERAL ("
                " SELECT count(*) n FROM document_entry d WHERE d.patient_key = p.patient_key"
                ") c ON c.n = 50 ORDER BY random() LIMIT 500"
            )
        ).all()
        docs = conn.execute(
            text(
                "SELECT p.patient_id, d.unique_id FROM document_entry d TABLESAMPLE SYSTEM (2)"
                " JOIN patient p USING (patient_key) LIMIT 5000"
            )
        ).all()
    engine.dispose()
    facts["find_targets"] = [(r.patient_id, "") for r in heavy]
    facts["get_targets"] = [(r.patient_id, r.unique_id) for r in docs]
    return facts


def explain(database_url: str, find_patient: str, get_target: tuple[str, str]) -> dict[str, str]:
    """EXPLAIN (ANALYZE, BUFFERS) of every statement the server's stored query code runs,
    captured from the real code path (SQLAlchemy's cursor events), not rewritten by hand."""
    engine = make_engine(database_url, pool_size=1)
    plans: dict[str, str] = {}
    for name, (query_id, params) in (
        ("FindDocuments", _find(find_patient)),
        ("GetDocuments", _get(get_target[1])),
    ):
        req, errors = read_query_request(adhoc_query_request(query_id, params, "LeafClass", None))
        assert req is not None and not errors
        if name == "FindDocuments":
            # As in the server, whose record gate has read the VIHF patient's key already.
            canonical = parse_patient_id(find_patient).canonical
            with engine.connect() as conn:
                req.known_keys[canonical] = patient_key(conn, canonical)  # type: ignore[assignment]
        statements: list[tuple[str, Any]] = []

        def capture(conn, cursor, statement, parameters, context, executemany, into=statements):
            into.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", capture)
        with engine.connect() as conn:
            run_stored_query(conn, req, 1000)
        event.remove(engine, "before_cursor_execute", capture)
        out = []
        raw = engine.raw_connection()
        try:
            cur = raw.driver_connection.cursor()  # type: ignore[union-attr]
            for statement, parameters in statements:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                out.append(statement.strip() + "\n" + "\n".join(r[0] for r in cur.fetchall()))
            raw.driver_connection.rollback()  # type: ignore[union-attr]
        finally:
            raw.close()
        plans[name] = "\n\n".join(out)
    engine.dispose()
    return plans


def _server_durations(srv: BenchServer, offset: int) -> tuple[list[float], int]:
    """Server-side durations (the request log's duration_ms) of stored queries since
    ``offset`` in the log."""
    log = srv.data_dir.parent / "server.log"
    data = log.read_bytes()
    durations = []
    for line in data[offset:].splitlines():
        if b'"duration_ms"' not in line or b"RegistryStoredQuery" not in line:
            continue
        try:
            durations.append(json.loads(line)["duration_ms"] / 1000)
        except (ValueError, KeyError):
            continue
    return durations, len(data)


def run(
    srv: BenchServer,
    pki_dir: str,
    facts: dict[str, Any],
    clients: int,
    seconds: float,
    prepared: int,
) -> list[dict[str, object]]:
    rows = []
    per_client = -(-prepared // clients)
    for kind, targets in (
        ("FindDocuments", facts["find_targets"]),
        ("GetDocuments", facts["get_targets"]),
    ):
        _, offset = _server_durations(srv, 0)
        parts, window = drive(
            _worker,
            [
                (srv.url, pki_dir, kind, targets, seconds, seed, per_client)
                for seed in range(clients)
            ],
        )
        samples = [s for part in parts for s in part]
        server_side, _ = _server_durations(srv, offset)
        server_stats = summarise(server_side) if server_side else {}
        rows.append(
            {
                "query": kind,
                "clients": clients,
                "clients_sign": "before" if prepared else "per call",
                **summarise(samples),
                "window_s": window,
                "queries_per_s": len(samples) / window,
                "server_median_ms": server_stats.get("median_ms"),
                "server_p99_ms": server_stats.get("p99_ms"),
                "server_peak_rss_mb": srv.peak_rss_mb(),
            }
        )
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks queries")
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--patients", type=int, default=50_000)
    parser.add_argument("--clients", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="per query and setting")
    parser.add_argument("--workers", default="2", help="comma-separated gunicorn worker counts")
    parser.add_argument(
        "--prepared",
        type=int,
        default=8000,
        help="queries the clients build and sign before the window, per query kind, in all "
        "(0: each client builds and signs every query in the window)",
    )
    args = parser.parse_args(argv)
    from dmp_xds.security.pki import init_test_pki

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="dmp-xds-bench-pki-") as pki_dir:
        pki = init_test_pki(Path(pki_dir))
        with database() as url:  # one registry, loaded once, for every worker count
            facts = prepare(url, args.documents, args.patients)
            plans = explain(url, facts["find_targets"][0][0], facts["get_targets"][0])
            for workers in (int(w) for w in args.workers.split(",")):
                with server(workers, pki.server_env(), url) as srv:
                    for clients in (int(c) for c in args.clients.split(",")):
                        rows += [
                            {"workers": workers, **row}
                            for row in run(
                                srv, pki_dir, facts, clients, args.seconds, args.prepared
                            )
                        ]
    for name, plan in plans.items():
        print(f"\n--- {name}\n{plan}")
    print(f"\nregistry: {facts['documents_in_registry']} documents; load: {facts.get('load')}\n")
    path = report("queries", rows)
    data = json.loads(path.read_text())
    data.update(
        {
            "registry_documents": facts["documents_in_registry"],
            "load": facts.get("load"),
            "explain": plans,
        }
    )
    path.write_text(json.dumps(data, indent=2))
    return 0
