"""ITI-41 throughput (issue 7, scenario 1): one 20 KB CDA per submission (MTOM, a freshly
signed VIHF per call) from 1, 8 and 32 client processes, against 1 and 2 gunicorn workers; and,
in the same run, the floor our cost is compared with.

    python -m benchmarks submit [--seconds 10] [--clients 1,8,32] [--workers 1,2] [--floor-n 300]
                                [--prepared 4000]

By default the clients build and sign their submissions (``--prepared`` in all, each with its
own VIHF assertion, valid for minutes) before the window opens and then only send them: on a
shared 2-core machine, a client that builds, signs (RSA, ~1.7 ms) and packs each call itself
takes about 6 ms of CPU per submission from the server it measures. ``--prepared 0`` measures
that way too (latency then includes the client's signing, as a live client pays it).

Per row: client latency, throughput over the clients' own window (they start together behind a
barrier once ready; process start-up and preparation are not counted; ``window_s`` is shorter
than ``--seconds`` when the prepared submissions ran out), the server's own duration per
request (the request log's ``duration_ms``), and the CPU the server spent per submission, split
between gunicorn (our Python) and PostgreSQL (every process of the local server: backends, WAL
writer...). ``cpu_capacity_per_s`` is the rate that CPU cost allows on all of this machine's
cores if nothing else ran on them.

The floor, measured in process on the same machine and database, is the irreducible work of
one submission, each step timed alone (median):

- parse: lxml parses the message's XML: the SOAP envelope (MTOM root part, with its VIHF) and
  the 20 KB CDA attachment (the server reads the CDA too);
- verify: one xmlsec verification of the VIHF signature on an already parsed envelope, with the
  key already validated (as our server caches it per signer);
- transaction: one psycopg2 transaction, synchronous commit, inserting copies of the rows our
  server wrote for a real submission of the same message (read back from the database): 10 rows
  in 7 statements, submission_set 1, document_entry 1, association 1, object_locator 3,
  unique_id_locator 2, audit_event 1, vihf_replay 1. (The server writes the same rows in two
  transactions: the replay claim with asynchronous commit, then the registry rows and the audit
  event; it also runs 5 reads and locks: the record gate, two advisory locks, the uniqueId and
  entryUUID checks.)

Not in the floor, reported beside it: the durable store write of the 20 KB document
(``FileStore.put_bytes``: temporary file, fsync, link, fsync of the directory), which our path
must also do. The floor's audit_event rows stay in the trail (it is append-only), marked
``detail = 'benchmarks.submit floor'``; its registry rows are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lxml import etree

from dmp_xds.client.xds import XdsClient
from dmp_xds.metadata.datatypes import parse_patient_id
from dmp_xds.registry.database import make_engine

from .harness import (
    BenchServer,
    capture,
    database,
    drive,
    post_prepared,
    report,
    server,
    succeeded,
    summarise,
    vihf,
)

PNR = "ProvideAndRegisterDocumentSet-b"
FLOOR_MARK = "benchmarks.submit floor"


# -- clients -------------------------------------------------------------------------------------


def _submission(pki: Any, patient: str) -> Callable[[XdsClient], Any]:
    """One ITI-41 of a fresh 20 KB CDA for ``patient``, as a call on a client (the VIHF is
    signed when the call runs)."""
    from tests.fixtures.metadata import submit_objects_request

    from .cda20k import cda_doc_of_size

    doc = cda_doc_of_size(patient, 20_000)
    request = submit_objects_request(patient, [doc])

    def call(client: XdsClient) -> Any:
        client.header_factory = vihf(pki, patient)
        return client.provide_and_register(request, {"Document01": doc.content})

    return call


def _submit_one(client: XdsClient, pki: Any, patient: str) -> float:
    submission = _submission(pki, patient)
    started = time.perf_counter()
    result = submission(client)
    elapsed = time.perf_counter() - started
    assert result.status.endswith("Success"), result.errors
    return elapsed


def _worker(
    start: Callable[[], object],
    url: str,
    pki_dir: str,
    patients: list[str],
    seconds: float,
    prepared: int,
) -> tuple[tuple[list[float], float], float, float]:
    """Submit for ``seconds`` once every client is ready; return the latencies and this
    client's CPU seconds, and the wall-clock window of the calls.

    With ``prepared`` > 0 the client builds and signs that many submissions before the
    barrier and then only sends them (stopping early if they run out); otherwise it builds
    and signs each one in the window, as a live client does."""
    from dmp_xds.security.pki import load_test_pki

    pki = load_test_pki(Path(pki_dir))
    client = XdsClient(url)
    _submit_one(client, pki, patients[0])  # connection, imports, first-call caches
    ready = capture([_submission(pki, patients[i % len(patients)]) for i in range(prepared)])
    start()
    cpu = time.process_time()
    window_start = time.time()
    if ready:
        samples = post_prepared(url, ready, seconds, succeeded)
        return (samples, time.process_time() - cpu), window_start, time.time()
    deadline = time.perf_counter() + seconds
    samples = []
    while time.perf_counter() < deadline:
        samples.append(_submit_one(client, pki, patients[len(samples) % len(patients)]))
    return (samples, time.process_time() - cpu), window_start, time.time()


def warm_up(srv: BenchServer, pki: Any, workers: int, per_thread: int = 10) -> None:
    """Concurrent submissions so that every worker has imported and cached what it needs."""
    from tests.fixtures.metadata import new_patient_id

    patient = new_patient_id()
    srv.new_patient(patient)

    def submit_some(_: int) -> None:
        client = XdsClient(srv.url)
        for _ in range(per_thread):
            _submit_one(client, pki, patient)

    with ThreadPoolExecutor(2 * workers) as pool:
        list(pool.map(submit_some, range(2 * workers)))


def run(
    srv: BenchServer, pki_dir: str, workers: int, clients: int, seconds: float, prepared: int
) -> dict[str, object]:
    """One setting; ``prepared``: submissions built beforehand, in all (0: live clients)."""
    from tests.fixtures.metadata import new_patient_id

    patients = [[new_patient_id() for _ in range(4)] for _ in range(clients)]
    for group in patients:
        for pid in group:
            srv.new_patient(pid)
    offset = srv.log_offset()
    app_cpu, pg_cpu = srv.cpu_s(), srv.postgres_cpu_s()
    per_client = -(-prepared // clients)
    parts, window = drive(
        _worker, [(srv.url, pki_dir, group, seconds, per_client) for group in patients]
    )
    app_cpu = srv.cpu_s() - app_cpu
    pg_cpu = None if pg_cpu is None else (srv.postgres_cpu_s() or 0) - pg_cpu
    samples = [s for part, _ in parts for s in part]
    # The warm-up call of each client (before the barrier) is counted in the CPU, not in n.
    n_cpu = len(samples) + clients
    server_side = summarise(srv.request_durations(offset, PNR))
    server_cpu_ms = (app_cpu + (pg_cpu or 0)) * 1000 / n_cpu
    return {
        "workers": workers,
        "clients": clients,
        "clients_sign": "before" if prepared else "per call",
        **summarise(samples),
        "window_s": window,
        "submissions_per_s": len(samples) / window,
        "server_median_ms": server_side["median_ms"],
        "server_p99_ms": server_side["p99_ms"],
        "app_cpu_ms": app_cpu * 1000 / n_cpu,
        "pg_cpu_ms": None if pg_cpu is None else pg_cpu * 1000 / n_cpu,
        "client_cpu_ms": sum(cpu for _, cpu in parts) * 1000 / len(samples),
        "cpu_capacity_per_s": (os.cpu_count() or 1) * 1000 / server_cpu_ms,
        "server_peak_rss_mb": srv.peak_rss_mb(),
    }


# -- the floor -----------------------------------------------------------------------------------


def _mime_parts(body: bytes, content_type: str) -> list[bytes]:
    """The bodies of a multipart/related message's parts (setup only: never timed)."""
    boundary = content_type.split('boundary="', 1)[1].split('"', 1)[0].encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        parts.append(chunk.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n"))
    return parts


def _timed_us(n: int, steps: Callable[[int], Callable[[], object]]) -> tuple[float, float]:
    """Median wall µs and mean CPU µs (this process) of ``steps(i)()`` for i in range(n),
    each step prepared before its timers start."""
    times = []
    cpu = 0.0
    for i in range(n):
        step = steps(i)
        cpu_started, started = time.process_time(), time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
        cpu += time.process_time() - cpu_started
    return statistics.median(times) * 1e6, cpu * 1e6 / n


_SKIPPED_DEFAULTS = ("nextval(", "now()", "clock_timestamp()", "CURRENT_TIMESTAMP")


def _written_rows(cur: Any, patient: str, patient_key: int) -> dict[str, list[dict[str, Any]]]:
    """The rows our server wrote for the patient's one submission, without the columns that
    PostgreSQL fills itself (serial ids, generated columns, ``now()`` defaults)."""
    queries = {
        "submission_set": ("patient_key = %s", (patient_key,)),
        "document_entry": ("patient_key = %s", (patient_key,)),
        "association": ("patient_key = %s", (patient_key,)),
        "object_locator": ("patient_key = %s", (patient_key,)),
        "unique_id_locator": ("patient_key = %s", (patient_key,)),
        "audit_event": (
            "patient_id = %s AND transaction = 'ITI-41' ORDER BY event_id DESC LIMIT 1",
            (parse_patient_id(patient).canonical,),
        ),
    }
    rows: dict[str, list[dict[str, Any]]] = {}
    for table, (where, params) in queries.items():
        cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
            " AND is_generated = 'NEVER' AND NOT (coalesce(column_default, '') LIKE ANY (%s))"
            " ORDER BY ordinal_position",
            (table, [f"%{d}%" for d in _SKIPPED_DEFAULTS]),
        )
        columns = [r[0] for r in cur.fetchall()]
        cur.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE {where}", params)  # noqa: S608 - our names
        rows[table] = [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
    rows["vihf_replay"] = [{"assertion_id": ""}]  # expires_at: now() + 5 minutes
    expected = {"submission_set": 1, "document_entry": 1, "association": 1, "object_locator": 3}
    for table, count in {**expected, "unique_id_locator": 2, "audit_event": 1}.items():
        assert len(rows[table]) == count, (table, len(rows[table]))
    return rows


_UUID_COLUMNS = {"entry_uuid", "logical_id", "source_uuid", "target_uuid", "request_id"}


def _fresh(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[tuple[Any, ...]]]:
    """The same rows with new identities (entryUUIDs, uniqueIds, request and assertion ids)."""
    uuids: dict[str, str] = {}
    uids: dict[str, str] = {}

    def new_uuid(old: object) -> str:
        return uuids.setdefault(str(old), str(uuid.uuid4()))

    out: dict[str, list[tuple[Any, ...]]] = {}
    for table, table_rows in rows.items():
        values = []
        for row in table_rows:
            new = dict(row)
            for column, value in row.items():
                if column in _UUID_COLUMNS and value is not None:
                    new[column] = new_uuid(value)
                elif column == "unique_id":
                    new[column] = uids.setdefault(value, f"2.25.{uuid.uuid4().int}")
                elif column == "objects":
                    new[column] = [
                        f"urn:uuid:{new_uuid(o.removeprefix('urn:uuid:'))}" for o in value
                    ]
            if table == "audit_event":
                new["detail"] = FLOOR_MARK
            if table == "vihf_replay":
                new["assertion_id"] = f"_{uuid.uuid4()}"
            values.append(tuple(new.values()))
        out[table] = values
    return out


def _insert_statements(rows: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """One INSERT per table (``execute_values`` form: all of a table's rows in one)."""
    statements = {}
    for table, table_rows in rows.items():
        columns = ", ".join(table_rows[0])
        statements[table] = f"INSERT INTO {table} ({columns}) VALUES %s"  # noqa: S608
    statements["vihf_replay"] = "INSERT INTO vihf_replay (assertion_id, expires_at) VALUES %s"
    return statements


def measure_floor(srv: BenchServer, pki: Any, n: int) -> dict[str, Any]:
    """The floor of one submission (module docstring), in µs of wall time and of CPU."""
    import requests
    from psycopg2.extras import execute_values

    from dmp_xds.repository.store import FileStore
    from dmp_xds.security.signature import AlgorithmPolicy, check_structure, locate, verify
    from dmp_xds.security.trust import Purpose, TrustStore, load_certificate, split_chain
    from tests.fixtures.metadata import new_patient_id

    patient = new_patient_id()
    srv.new_patient(patient)

    # One real submission: the rows it writes are the rows the floor's transaction copies.
    [request] = capture([_submission(pki, patient)])
    body, content_type = request.body, request.content_type
    answer = requests.post(
        srv.url + "/xds/repository", data=body, headers={"Content-Type": content_type}, timeout=60
    )
    assert answer.ok and b"ResponseStatusType:Success" in answer.content, answer.content[:500]
    root_xml, cda = _mime_parts(body, content_type)

    # parse
    parser = etree.XMLParser(resolve_entities=False, no_network=True)

    def parse() -> None:
        etree.fromstring(root_xml, parser)
        etree.fromstring(cda, parser)

    parse_us, parse_cpu_us = _timed_us(n, lambda _: parse)

    # verify (the key validated once, as the server caches it per signer)
    algorithms = AlgorithmPolicy.from_names(["rsa-sha256"])
    tree = etree.fromstring(root_xml, parser)
    found = locate(tree, tree[0])
    assert found.signature is not None
    facts = check_structure(found.signature, found.assertion_id, algorithms)
    leaf, intermediates = split_chain([load_certificate(d, "cert") for d in facts.certificates])
    store = TrustStore.from_paths(pki.trust_dir, pki.crl_dir)
    key = store.validate(leaf, intermediates, Purpose.SIGNATURE).xmlsec_key

    def verifying(_: int) -> Callable[[], None]:
        envelope = etree.fromstring(root_xml, parser)  # a fresh tree, parsed before the timer
        located = locate(envelope, envelope[0])
        signature, assertion = located.signature, located.assertion
        return lambda: verify(signature, assertion, key, algorithms)  # type: ignore[arg-type]

    verify_us, verify_cpu_us = _timed_us(n, verifying)

    # transaction
    engine = make_engine(srv.database_url, pool_size=1)
    raw = engine.raw_connection()
    conn = raw.driver_connection
    cur = conn.cursor()  # type: ignore[union-attr]
    cur.execute(
        "SELECT patient_key FROM patient WHERE patient_id = %s",
        (parse_patient_id(patient).canonical,),
    )
    patient_key = cur.fetchone()[0]
    written = _written_rows(cur, patient, patient_key)
    conn.rollback()  # type: ignore[union-attr]
    statements = _insert_statements(written)
    replay_ids: list[str] = []

    def transaction(_: int) -> Callable[[], None]:
        rows = _fresh(written)
        replay_ids.append(rows["vihf_replay"][0][0])

        def run() -> None:
            for table, values in rows.items():
                template = "(%s, now() + interval '5 minutes')" if table == "vihf_replay" else None
                execute_values(cur, statements[table], values, template=template)
            conn.commit()  # type: ignore[union-attr]

        return run

    transaction(0)()  # warm: plan caches, first pages
    pg_before, wall_before = srv.postgres_cpu_s(), time.time()
    transaction_us, tx_cpu_us = _timed_us(n, transaction)
    tx_wall = time.time() - wall_before
    pg_after = srv.postgres_cpu_s()
    tx_pg_cpu_us = (
        None if pg_before is None or pg_after is None else (pg_after - pg_before) * 1e6 / n
    )

    # Clean up: the registry rows (the audit rows stay: the trail is append-only).
    for table in ("submission_set", "document_entry", "association", "object_locator"):
        cur.execute(f"DELETE FROM {table} WHERE patient_key = %s", (patient_key,))  # noqa: S608
    cur.execute("DELETE FROM unique_id_locator WHERE patient_key = %s", (patient_key,))
    cur.execute("DELETE FROM vihf_replay WHERE assertion_id = ANY(%s)", (replay_ids,))
    conn.commit()  # type: ignore[union-attr]
    raw.close()
    engine.dispose()

    # Beside the floor: the durable write of the document bytes (fresh bytes each time).
    with tempfile.TemporaryDirectory(dir=srv.data_dir, prefix="floor-store-") as tmp:
        files = FileStore(Path(tmp))
        store_us, _ = _timed_us(
            n, lambda i: lambda: files.put_bytes(cda + f"<!-- {i} {uuid.uuid4()} -->".encode())
        )

    floor_us = parse_us + verify_us + transaction_us
    floor_cpu_us = parse_cpu_us + verify_cpu_us + tx_cpu_us + (tx_pg_cpu_us or 0)
    return {
        "n": n,
        "message_bytes": len(body),
        "envelope_bytes": len(root_xml),
        "cda_bytes": len(cda),
        "parse_us": parse_us,
        "verify_us": verify_us,
        "transaction_us": transaction_us,
        "transaction_client_cpu_us": tx_cpu_us,
        "transaction_postgres_cpu_us": tx_pg_cpu_us,
        "transactions_per_s_sequential": n / tx_wall,
        "rows": {table: len(rows) for table, rows in written.items()},
        "floor_us": floor_us,
        "floor_cpu_us": floor_cpu_us if tx_pg_cpu_us is not None else None,
        "store_write_us_not_in_floor": store_us,
    }


# -- the scenario --------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks submit")
    parser.add_argument("--seconds", type=float, default=10.0, help="per setting")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--workers", default="1,2", help="comma-separated gunicorn worker counts")
    parser.add_argument("--floor-n", type=int, default=300, help="repetitions of each floor step")
    parser.add_argument(
        "--prepared",
        type=int,
        default=4000,
        help="submissions the clients build and sign before the window, in all (0: each "
        "client builds and signs every call in the window, sharing the CPU with the server)",
    )
    args = parser.parse_args(argv)
    from dmp_xds.security.pki import init_test_pki

    rows: list[dict[str, object]] = []
    floor: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dmp-xds-bench-pki-") as pki_dir:
        pki = init_test_pki(Path(pki_dir))
        with database() as url:
            for workers in (int(w) for w in args.workers.split(",")):
                with server(workers, pki.server_env(), url) as srv:
                    warm_up(srv, pki, workers)
                    if not floor:
                        floor = measure_floor(srv, pki, args.floor_n)
                    for clients in (int(c) for c in args.clients.split(",")):
                        rows.append(
                            run(srv, pki_dir, workers, clients, args.seconds, args.prepared)
                        )
    floor_ms = floor["floor_us"] / 1000
    floor_cpu_ms = floor["floor_cpu_us"] / 1000 if floor["floor_cpu_us"] else None
    for row in rows:
        # Latency: the server's own duration (1 client: no queueing) against the floor's wall
        # time. CPU: gunicorn + PostgreSQL per submission against the floor's CPU.
        if row["server_median_ms"] is not None:
            row["server_median_over_floor"] = row["server_median_ms"] / floor_ms  # type: ignore[operator]
        if floor_cpu_ms and row["pg_cpu_ms"] is not None:
            cpu = row["app_cpu_ms"] + row["pg_cpu_ms"]  # type: ignore[operator]
            row["cpu_over_floor"] = cpu / floor_cpu_ms
    print(
        f"floor per submission: parse {floor['parse_us']:.0f} µs + verify "
        f"{floor['verify_us']:.0f} µs + transaction {floor['transaction_us']:.0f} µs "
        f"({sum(floor['rows'].values())} rows: "
        + ", ".join(f"{t} {c}" for t, c in floor["rows"].items())
        + f") = {floor['floor_us']:.0f} µs wall"
        + (f", {floor['floor_cpu_us']:.0f} µs CPU" if floor["floor_cpu_us"] else "")
        + f"; not in the floor: durable store write {floor['store_write_us_not_in_floor']:.0f} µs\n"
    )
    path = report("submit", rows)
    for row in rows:
        if row["clients"] == 1:
            print(
                f"our cost / floor, {row['workers']} worker(s), 1 client: server latency "
                f"{row.get('server_median_over_floor', float('nan')):.1f}x, CPU "
                f"{row.get('cpu_over_floor', float('nan')):.1f}x (target <= 3x)"
            )
    data = json.loads(path.read_text())
    data["floor"] = floor
    path.write_text(json.dumps(data, indent=2))
    return 0
