"""ITI-43 throughput of 1 MB documents (issue 7, scenario 3): N client processes retrieving
concurrently, each a freshly signed VIHF per call, and what a request costs the server in
memory. Targets: >= 300 MB/s aggregate; memory per request <= 2x the document size.

    python -m benchmarks retrieve [--size-mb 1] [--clients 1,4,8] [--seconds 10] [--workers 2]
                                  [--documents 4] [--prepared 6000]

By default each client builds and signs its requests before the window and, in it, only sends
them and reads each answer whole (checking its status and length); ``--prepared 0`` has our
XdsClient sign each request and parse each answer in the window (MTOM, attachment spooled).

Each client has its own patient with ``--documents`` documents (random bytes, a PDF as far as
the metadata go, stored as they are) and retrieves them in turn; it checks every answer's
length. Throughput is the bytes of document received over the clients' own window (they start
together once imported; process start-up is not counted), in MiB/s. ``app_cpu_ms`` and
``pg_cpu_ms`` are the CPU gunicorn and the local PostgreSQL spent per retrieval;
``cpu_capacity_mib_per_s`` the rate that cost allows on all of the machine's cores if the
clients (``client_cpu_ms`` each: VIHF signing, MTOM parsing, spooling) ran elsewhere.

Memory: after a warm-up (every worker has served documents), each worker's resident set is
read (idle), its peak is reset (Linux ``clear_refs``), and during the window the resident sets
are also sampled every 5 ms. ``rss_growth_mb`` is the sum over workers of (peak - idle);
``mb_per_request`` is the largest growth of any one worker (a gunicorn sync worker serves one
request at a time, so its growth is what one request costs it; dividing the sum by the requests
in flight overstated it whenever there were more workers than clients, each worker growing in
turn), and ``per_request_over_size`` compares that with the document size. The client (our
XdsClient: MTOM parsed, attachment spooled to a temporary file then read) shares the machine's
cores with the server.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dmp_xds.client.xds import XdsClient

from .harness import (
    REPOSITORY_UID,
    BenchServer,
    capture,
    drive,
    post_prepared,
    report,
    server,
    succeeded,
    summarise,
    vihf,
)

MIB = 1024 * 1024
RETRIEVE = "RetrieveDocumentSet"


def _retrieval(pki: Any, patient: str, unique_id: str) -> Callable[[XdsClient], Any]:
    """One ITI-43 as a call on a client (its VIHF signed when the call runs)."""

    def call(client: XdsClient) -> Any:
        client.header_factory = vihf(pki, patient)
        return client.retrieve([(REPOSITORY_UID, unique_id)])

    return call


def _retrieve_one(client: XdsClient, pki: Any, patient: str, unique_id: str, size: int) -> float:
    call = _retrieval(pki, patient, unique_id)
    started = time.perf_counter()
    result = call(client)
    elapsed = time.perf_counter() - started
    assert result.status.endswith("Success"), result.errors
    assert len(result.documents[0].content) == size, len(result.documents[0].content)
    return elapsed


def _worker(
    start: Callable[[], object],
    url: str,
    pki_dir: str,
    patient: str,
    unique_ids: list[str],
    size: int,
    seconds: float,
    prepared: int,
) -> tuple[tuple[list[float], float], float, float]:
    """Retrieve for ``seconds`` once every client is ready; return the latencies and this
    client's CPU seconds, and the wall-clock window of the calls. With ``prepared`` > 0 the
    requests (and their VIHFs) are built before the window and the answers only read whole
    and checked (status, at least the document's size); otherwise our XdsClient signs each
    request and parses each answer (MTOM, attachment spooled) in the window."""
    from dmp_xds.security.pki import load_test_pki

    pki = load_test_pki(Path(pki_dir))
    client = XdsClient(url)
    _retrieve_one(client, pki, patient, unique_ids[0], size)  # connection, imports
    ready = capture(
        [_retrieval(pki, patient, unique_ids[i % len(unique_ids)]) for i in range(prepared)]
    )
    start()
    cpu = time.process_time()
    window_start = time.time()
    if ready:
        samples = post_prepared(url, ready, seconds, lambda b: succeeded(b) and len(b) >= size)
        return (samples, time.process_time() - cpu), window_start, time.time()
    deadline = time.perf_counter() + seconds
    samples = []
    while time.perf_counter() < deadline:
        uid = unique_ids[len(samples) % len(unique_ids)]
        samples.append(_retrieve_one(client, pki, patient, uid, size))
    return (samples, time.process_time() - cpu), window_start, time.time()


def upload(srv: BenchServer, pki: Any, patients: int, documents: int, size: int) -> list[Any]:
    """``patients`` patients with ``documents`` documents of ``size`` random bytes each."""
    from tests.fixtures.metadata import Doc, new_patient_id, submit_objects_request

    stock = []
    for _ in range(patients):
        patient = new_patient_id()
        srv.new_patient(patient)
        client = XdsClient(srv.url, header_factory=vihf(pki, patient), timeout=600)
        uids = []
        for _ in range(documents):
            doc = Doc(os.urandom(size), mime_type="application/pdf")
            result = client.provide_and_register(
                submit_objects_request(patient, [doc]), {"Document01": doc.content}
            )
            assert result.status.endswith("Success"), result.errors
            uids.append(doc.unique_id)
        stock.append((patient, uids))
    return stock


@contextmanager
def memory_window(srv: BenchServer) -> Iterator[dict[str, float]]:
    """The workers' resident-set growth during the block (sum over workers of peak - idle)."""
    pids = srv.worker_pids()
    idle = {pid: rss for pid, (rss, _) in srv.worker_memory_kib().items()}
    reset = srv.reset_peak_rss()
    peak = dict(idle)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid, (rss, _) in srv.worker_memory_kib().items():
                if pid in peak:
                    peak[pid] = max(peak[pid], rss)
            stop.wait(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    result: dict[str, float] = {}
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        for pid, (_, hwm) in srv.worker_memory_kib().items():
            if pid in peak and reset:
                peak[pid] = max(peak[pid], hwm)
        result["idle_rss_mb"] = sum(idle.values()) / 1024
        growth = [max(0, peak[p] - idle[p]) for p in pids]
        result["rss_growth_mb"] = sum(growth) / 1024
        result["worker_growth_max_mb"] = max(growth, default=0) / 1024
        result["peak_reset"] = float(reset)


def warm_up(srv: BenchServer, pki_dir: str, stock: list[Any], size: int, workers: int) -> None:
    """Concurrent retrievals, so that every worker has served documents before idle is read."""
    from dmp_xds.security.pki import load_test_pki

    pki = load_test_pki(Path(pki_dir))

    def retrieve_some(i: int) -> None:
        patient, uids = stock[i % len(stock)]
        client = XdsClient(srv.url)
        for uid in uids * 3:
            _retrieve_one(client, pki, patient, uid, size)

    with ThreadPoolExecutor(2 * workers) as pool:
        list(pool.map(retrieve_some, range(2 * workers)))


def run(
    srv: BenchServer,
    pki_dir: str,
    stock: list[Any],
    size: int,
    workers: int,
    clients: int,
    seconds: float,
    prepared: int,
) -> dict[str, object]:
    offset = srv.log_offset()
    per_client = -(-prepared // clients)
    app_cpu, pg_cpu = srv.cpu_s(), srv.postgres_cpu_s()
    with memory_window(srv) as memory:
        parts, window = drive(
            _worker,
            [(srv.url, pki_dir, *stock[i], size, seconds, per_client) for i in range(clients)],
        )
    app_cpu = srv.cpu_s() - app_cpu
    pg_cpu = None if pg_cpu is None else (srv.postgres_cpu_s() or 0) - pg_cpu
    samples = [s for part, _ in parts for s in part]
    n_cpu = len(samples) + clients  # each client's warm-up call is in the CPU, not in n
    server_cpu_ms = (app_cpu + (pg_cpu or 0)) * 1000 / n_cpu
    server_side = summarise(srv.request_durations(offset, RETRIEVE))
    per_request = memory["worker_growth_max_mb"]
    return {
        "workers": workers,
        "clients": clients,
        "size_mb": size / MIB,
        "clients_sign": "before" if prepared else "per call",
        **summarise(samples),
        "window_s": window,
        "mib_per_s": len(samples) * size / MIB / window,
        "requests_per_s": len(samples) / window,
        "server_median_ms": server_side["median_ms"],
        "app_cpu_ms": app_cpu * 1000 / n_cpu,
        "pg_cpu_ms": None if pg_cpu is None else pg_cpu * 1000 / n_cpu,
        "client_cpu_ms": sum(cpu for _, cpu in parts) * 1000 / len(samples),
        "cpu_capacity_mib_per_s": (os.cpu_count() or 1) * 1000 / server_cpu_ms * size / MIB,
        "idle_rss_mb": memory["idle_rss_mb"],
        "rss_growth_mb": memory["rss_growth_mb"],
        "mb_per_request": per_request,
        "per_request_over_size": per_request / (size / MIB),
        "server_peak_rss_mb": srv.peak_rss_mb(),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks retrieve")
    parser.add_argument("--size-mb", type=float, default=1.0, help="document size in MiB")
    parser.add_argument("--clients", default="1,4,8", help="comma-separated client counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="per setting")
    parser.add_argument("--workers", default="2", help="comma-separated gunicorn worker counts")
    parser.add_argument("--documents", type=int, default=4, help="documents per client")
    parser.add_argument(
        "--prepared",
        type=int,
        default=6000,
        help="retrievals the clients build and sign before the window, in all (0: each "
        "client signs every request and parses every answer in the window)",
    )
    args = parser.parse_args(argv)
    from dmp_xds.security.pki import init_test_pki

    size = int(args.size_mb * MIB)
    client_counts = [int(c) for c in args.clients.split(",")]
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="dmp-xds-bench-pki-") as pki_dir:
        pki = init_test_pki(Path(pki_dir))
        for workers in (int(w) for w in args.workers.split(",")):
            with server(workers, pki.server_env()) as srv:
                stock = upload(srv, pki, max(client_counts), args.documents, size)
                warm_up(srv, pki_dir, stock, size, workers)
                for clients in client_counts:
                    rows.append(
                        run(
                            srv,
                            pki_dir,
                            stock,
                            size,
                            workers,
                            clients,
                            args.seconds,
                            args.prepared,
                        )
                    )
    report("retrieve", rows)
    return 0
