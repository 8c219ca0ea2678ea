"""Crash injection: kill -9 the server (master and workers, in random orders) while clients
submit ITI-41 concurrently, restart it, and check that nothing acknowledged was lost and
nothing half-written became visible (harness.check_invariants).

10 iterations by default, 100 with ``pytest --long``. The seed is printed so that a failing
sequence can be replayed (``DMP_XDS_CRASH_SEED``).
"""

from __future__ import annotations

import os
import random
import threading
import time

import requests

from dmp_xds.client.xds import XdsClient
from tests.conftest import stop_server
from tests.reliability.harness import (
    Submission,
    check_invariants,
    check_retrievable,
    client,
    crash,
    new_patient,
    start_own_server,
)

CLIENTS = 4


def _load(
    url: str, pki, patients: list[str], rng: random.Random, stop: threading.Event
) -> tuple[list[Submission], list[threading.Thread]]:
    """Start CLIENTS threads submitting until ``stop``; they append to the returned list."""
    submissions: list[Submission] = []
    lock = threading.Lock()

    def run(patient_id: str, seed: int) -> None:
        local = random.Random(seed)
        xds: XdsClient = client(url, pki, patient_id, timeout=15)
        while not stop.is_set():
            sub = Submission.random(patient_id, local)
            with lock:
                submissions.append(sub)
            sub.send(xds)

    threads = [
        threading.Thread(target=run, args=(patients[n % len(patients)], rng.random()), daemon=True)
        for n in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    return submissions, threads


def test_kill_minus_nine_under_concurrent_submissions(
    database_url, engine, test_pki, tmp_path, pytestconfig
) -> None:
    iterations = 100 if pytestconfig.getoption("--long") else 10
    seed = int(os.environ.get("DMP_XDS_CRASH_SEED", time.time_ns() % 1_000_000))
    print(f"crash injection seed {seed}")
    rng = random.Random(seed)
    data_dir = tmp_path / "server"
    patients = [new_patient(engine) for _ in range(CLIENTS)]
    everything: list[Submission] = []
    modes: dict[str, int] = {}
    server = start_own_server(database_url, data_dir, test_pki)
    try:
        for _ in range(iterations):
            stop = threading.Event()
            submissions, threads = _load(server.url, test_pki, patients, rng, stop)
            time.sleep(rng.uniform(0.05, 0.5))  # a random point of the submissions
            mode = crash(server, rng)
            modes[mode] = modes.get(mode, 0) + 1
            stop.set()
            for thread in threads:
                thread.join(30)
                assert not thread.is_alive(), "a client hangs after the crash"
            everything += submissions
            # The server restarts cleanly on the same data, and the invariants hold.
            server = start_own_server(database_url, data_dir, test_pki)
            ready = requests.get(server.url + "/ready", timeout=10)
            assert ready.status_code == 200, ready.text
            check_invariants(engine, server.store_dir, everything)
        counts = check_invariants(engine, server.store_dir, everything)
        retrieved = check_retrievable(server.url, test_pki, everything)
        print(
            f"{iterations} crashes {modes}: {len(everything)} submissions, {counts}, "
            f"{retrieved} acknowledged documents retrieved byte-identical"
        )
        assert counts["acknowledged"] > 0, "no submission got through: the test tested nothing"
    finally:
        stop_server(server)
