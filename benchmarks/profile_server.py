"""Profile the server's own path in process: the WSGI application called directly (no HTTP, no
gunicorn) with requests our client built and signed beforehand, under cProfile, so that only
server work is counted.

    python -m benchmarks profile_server find   [--n 300] [--top 30]   # FindDocuments, 50 docs
    python -m benchmarks profile_server get    [--n 300]              # GetDocuments by uniqueId
    python -m benchmarks profile_server submit [--n 300]              # ITI-41, one 20 KB CDA
    python -m benchmarks profile_server batch  [--n 2] [--documents 1000]  # ITI-41, 1,000 CDAs
    python -m benchmarks profile_server retrieve [--n 300] [--size-mb 1]   # ITI-43, 1 MB

Needs ``DMP_XDS_DATABASE_URL`` (find/get: a registry loaded with ``dmp-xds load-synthetic``;
submit, batch, retrieve: any database, the patients and documents they need are created).
Prints the per-request wall time without the profiler, then the profile's top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from dmp_xds.client.xds import XdsClient
from dmp_xds.metadata import vocabulary as v
from dmp_xds.registry.database import make_engine, migrate

from .harness import (
    REPOSITORY_UID,
    Prepared,
    capture,
    open_patient,
    postmaster_pid,
    tree_cpu_s,
    vihf,
)


def wsgi_call(app: Any, request: Prepared) -> bytes:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": request.path,
        "CONTENT_TYPE": request.content_type,
        "CONTENT_LENGTH": str(len(request.body)),
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.url_scheme": "http",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
    }
    status: list[str] = []
    out = b"".join(app(environ, lambda s, h, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (status, out[:500])
    return out


def _requests(
    kind: str,
    n: int,
    pki: Any,
    database_url: str,
    *,
    documents: int = 1000,
) -> list[Prepared]:
    engine = make_engine(database_url, pool_size=1)
    calls = []
    if kind in ("find", "get"):
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT p.patient_id, min(d.unique_id) uid FROM patient p"
                    " JOIN document_entry d USING (patient_key) GROUP BY p.patient_id"
                    " HAVING count(*) = 50 LIMIT :n"
                ),
                {"n": n},
            ).all()
        for i in range(n):
            patient, uid = rows[i % len(rows)]
            if kind == "find":
                params = {
                    "$XDSDocumentEntryPatientId": patient,
                    "$XDSDocumentEntryStatus": [v.APPROVED],
                }
                query = v.FIND_DOCUMENTS
            else:
                params, query = {"$XDSDocumentEntryUniqueId": [uid]}, v.GET_DOCUMENTS

            def call(client: XdsClient, p: str = patient, q: str = query, a: dict = params) -> None:
                client.header_factory = vihf(pki, p)
                client.stored_query(q, a)

            calls.append(call)
    elif kind == "batch":
        from tests.fixtures.metadata import new_patient_id, submit_objects_request

        from .cda20k import cda_doc_of_size

        for _ in range(n):
            patient = new_patient_id()
            with engine.begin() as conn:
                open_patient(conn, patient)
            docs = [cda_doc_of_size(patient, 20_000) for _ in range(documents)]

            def call(client: XdsClient, p: str = patient, ds: list = docs) -> None:
                client.header_factory = vihf(pki, p)
                client.provide_and_register(
                    submit_objects_request(p, ds), {d.symbolic_id: d.content for d in ds}
                )

            calls.append(call)
    else:
        from tests.fixtures.metadata import new_patient_id, submit_objects_request

        from .cda20k import cda_doc_of_size

        for _ in range(n):
            patient = new_patient_id()
            with engine.begin() as conn:
                open_patient(conn, patient)
            doc = cda_doc_of_size(patient, 20_000)

            def call(client: XdsClient, p: str = patient, d: Any = doc) -> None:
                client.header_factory = vihf(pki, p)
                client.provide_and_register(
                    submit_objects_request(p, [d]), {"Document01": d.content}
                )

            calls.append(call)
    engine.dispose()
    return capture(calls)


def _retrieve_requests(
    app: Any, n: int, pki: Any, database_url: str, size: int, stored: int = 8
) -> list[Prepared]:
    """Store ``stored`` documents of ``size`` random bytes for one patient (through the app),
    then capture ``n`` ITI-43 requests for them in turn."""
    from tests.fixtures.metadata import Doc, new_patient_id, submit_objects_request

    engine = make_engine(database_url, pool_size=1)
    patient = new_patient_id()
    with engine.begin() as conn:
        open_patient(conn, patient)
    engine.dispose()
    docs = [Doc(os.urandom(size), mime_type="application/pdf") for _ in range(stored)]

    def provide(client: XdsClient, d: Any) -> None:
        client.header_factory = vihf(pki, patient)
        client.provide_and_register(submit_objects_request(patient, [d]), {"Document01": d.content})

    for request in capture([functools.partial(provide, d=d) for d in docs]):
        wsgi_call(app, request)

    def retrieve(client: XdsClient, uid: str) -> None:
        client.header_factory = vihf(pki, patient)
        client.retrieve([(REPOSITORY_UID, uid)])

    return capture([functools.partial(retrieve, uid=docs[i % stored].unique_id) for i in range(n)])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks profile_server")
    parser.add_argument("kind", choices=("find", "get", "submit", "batch", "retrieve"))
    parser.add_argument("--n", type=int, help="measured requests (default 300; batch: 2)")
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--documents", type=int, default=1000, help="batch: documents per set")
    parser.add_argument("--size-mb", type=float, default=1.0, help="retrieve: document MiB")
    parser.add_argument("--save", type=Path, help="also write the profile (pstats) to this file")
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = 2 if args.kind == "batch" else 300
    database_url = os.environ["DMP_XDS_DATABASE_URL"]
    migrate(database_url)
    from dmp_xds.app import Application
    from dmp_xds.config import Settings
    from dmp_xds.security.pki import init_test_pki

    with tempfile.TemporaryDirectory(prefix="dmp-xds-profile-") as tmp:
        pki = init_test_pki(Path(tmp) / "pki")
        os.environ.update(pki.server_env())
        os.environ["DMP_XDS_DATA_DIR"] = str(Path(tmp) / "data")
        app = Application(Settings.from_env())
        if args.kind == "retrieve":
            size = int(args.size_mb * 1024 * 1024)
            sent = _retrieve_requests(app, args.n * 2, pki, database_url, size)
        else:
            sent = _requests(args.kind, args.n * 2, pki, database_url, documents=args.documents)
        warm, measured = sent[: args.n], sent[args.n :]
        for req in warm[: max(1, args.n // 2)]:
            wsgi_call(app, req)
        times = []
        postmaster = postmaster_pid(database_url)
        pg_started = tree_cpu_s(postmaster) if postmaster else 0.0
        cpu_started = time.process_time()
        for req in warm[args.n // 2 :]:
            started = time.perf_counter()
            wsgi_call(app, req)
            times.append(time.perf_counter() - started)
        cpu_ms = (time.process_time() - cpu_started) / len(times) * 1000
        pg_ms = (tree_cpu_s(postmaster) - pg_started) / len(times) * 1000 if postmaster else None
        profile = cProfile.Profile()
        profile.enable()
        for req in measured:
            wsgi_call(app, req)
        profile.disable()
    if args.save:
        profile.dump_stats(args.save)
    times.sort()
    print(
        f"{args.kind}: {len(times)} requests in process, median "
        f"{statistics.median(times) * 1000:.2f} ms, p99 {times[int(len(times) * 0.99)] * 1000:.2f}"
        f" ms, {len(times) / sum(times):.0f} requests/s on one core"
    )
    # CPU per request, ours and PostgreSQL's (when it runs here): steadier than times on a
    # shared machine, so the figure to compare two versions of the code with, run in turn.
    pg = f", PostgreSQL {pg_ms:.2f} ms" if pg_ms is not None else ""
    print(f"CPU per request: server {cpu_ms:.2f} ms{pg}")
    for key in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(key).print_stats(args.top)
        print(out.getvalue())
    return 0
