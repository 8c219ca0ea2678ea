"""Dependencies failing under a running server: PostgreSQL stopped and restarted under load,
SIGTERM during a slow upload, a full or read-only document store.

Each test runs a server of its own (it is stopped, starved or broken on purpose); the database
outage test also runs a PostgreSQL of its own, so that the session's database is never stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dmp_xds.client.xds import SoapFaultError
from dmp_xds.metadata import vocabulary as v
from dmp_xds.namespaces import RS
from dmp_xds.registry.database import EmbeddedPostgres, make_engine, migrate
from tests.conftest import snapshot, stop_server
from tests.fixtures.metadata import Doc
from tests.reliability.harness import (
    Submission,
    check_invariants,
    check_retrievable,
    client,
    new_patient,
    start_own_server,
)

APPROVED = ["urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"]


@contextlib.contextmanager
def own_postgres() -> Iterator[tuple[EmbeddedPostgres, Path, str]]:
    """A PostgreSQL for this test only, outside pytest's private (0700) temp root: pgserver
    runs it as its own system user, which must reach the data directory."""
    root = Path(tempfile.mkdtemp(prefix="dmp-xds-outage-pg-"))
    pg = EmbeddedPostgres(root / "data")
    url = pg.start()
    migrate(url)
    try:
        yield pg, root, url
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_database_outage_fails_fast_and_recovers_by_itself(test_pki, tmp_path) -> None:
    with own_postgres() as (pg, root, url):
        engine = make_engine(url, pool_size=1)
        server = start_own_server(url, tmp_path / "server", test_pki)
        patients = [new_patient(engine) for _ in range(4)]
        calls: list[tuple[float, float, str, str]] = []  # start, duration, kind, outcome
        submissions: list[Submission] = []
        stop = threading.Event()
        lock = threading.Lock()

        def run(patient_id: str) -> None:
            xds = client(server.url, test_pki, patient_id, timeout=30)
            n = 0
            while not stop.is_set():
                n += 1
                started = time.monotonic()
                if n % 2:
                    sub = Submission(patient_id, [Doc(os.urandom(2000)), Doc(os.urandom(700))])
                    with lock:
                        submissions.append(sub)
                    kind, outcome = "ITI-41", sub.send(xds).outcome
                    detail = ",".join(sub.errors)
                else:
                    kind = "ITI-18"
                    try:
                        result = xds.stored_query(
                            v.FIND_DOCUMENTS,
                            {
                                "$XDSDocumentEntryPatientId": patient_id,
                                "$XDSDocumentEntryStatus": APPROVED,
                            },
                        )
                        outcome, detail = result.status.lower(), ""
                    except SoapFaultError as exc:
                        outcome, detail = "fault", exc.fault.subcode or ""
                    except requests.RequestException as exc:
                        outcome, detail = "no answer", type(exc).__name__
                with lock:
                    calls.append((started, time.monotonic() - started, kind, f"{outcome} {detail}"))
                time.sleep(0.02)

        threads = [threading.Thread(target=run, args=(p,), daemon=True) for p in patients]
        try:
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            pg.stop()
            stopped = time.monotonic()
            time.sleep(1.5)
            not_ready = requests.get(server.url + "/ready", timeout=10)
            restarting = time.monotonic()
            restarted_pg = EmbeddedPostgres(root / "data")
            assert restarted_pg.start() == url  # same socket: the server's URL stays valid
            restarted = time.monotonic()
            recovered = None
            while recovered is None and time.monotonic() < restarted + 20:
                time.sleep(0.05)
                with lock:
                    recovered = next(
                        (
                            s + d
                            for s, d, _, o in calls
                            if s > restarted and o.startswith("success")
                        ),
                        None,
                    )
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        ready = requests.get(server.url + "/ready", timeout=10)
        try:
            assert not_ready.status_code == 503 and "database" in not_ready.text
            assert ready.status_code == 200, ready.text
            during = [c for c in calls if c[0] > stopped + 0.2 and c[0] + c[1] < restarting]
            assert during, "no call was made during the outage"
            # Fast, explicit failures: a Receiver fault naming the XDS code, never a hang.
            outcomes = {o for _, _, _, o in during}
            assert all(o == f"fault {{{RS}}}XDSRegistryNotAvailable" for o in outcomes), outcomes
            slowest = max(d for _, d, _, _ in during)
            assert slowest < 5, f"a call took {slowest:.1f} s during the outage"
            assert not any(o.startswith("no answer") for _, _, _, o in calls)
            assert recovered is not None, "no success within 20 s of the database restart"
            print(
                f"outage: {len(during)} calls failed fast (slowest {slowest * 1000:.0f} ms); "
                f"first success {recovered - restarted:.2f} s after PostgreSQL was back"
            )
            counts = check_invariants(engine, server.store_dir, submissions)
            check_retrievable(server.url, test_pki, submissions)
            assert counts["acknowledged"] > 0
        finally:
            stop_server(server)
            engine.dispose()
            restarted_pg.stop()


class _SlowBody:
    """A request body sent slowly (a client on a slow link), signalling its first chunk."""

    def __init__(self, body, started: threading.Event, pause: float) -> None:
        self._body, self._started, self._pause = body, started, pause

    def __len__(self) -> int:
        return len(self._body)

    def __iter__(self):
        for chunk in self._body:
            for at in range(0, len(chunk), 65536):
                self._started.set()
                time.sleep(self._pause)
                yield chunk[at : at + 65536]


class _SlowSession(requests.Session):
    def __init__(self, started: threading.Event, pause: float) -> None:
        super().__init__()
        self.started, self.pause = started, pause

    def post(self, url, data=None, **kwargs):  # type: ignore[override]
        return super().post(url, data=_SlowBody(data, self.started, self.pause), **kwargs)


def test_sigterm_lets_an_inflight_upload_finish(database_url, engine, test_pki, tmp_path) -> None:
    data_dir = tmp_path / "server"
    server = start_own_server(
        database_url, data_dir, test_pki, {"DMP_XDS_GRACEFUL_TIMEOUT_S": "30"}
    )
    patient_id = new_patient(engine)
    doc = Doc(os.urandom(6 * 1024 * 1024))  # ~100 chunks of 64 KB, ~2.5 s on the wire
    started = threading.Event()
    session = _SlowSession(started, pause=0.025)
    xds = client(server.url, test_pki, patient_id, timeout=60)
    xds.soap.session = session
    sub = Submission(patient_id, [doc])
    sender = threading.Thread(target=sub.send, args=(xds,))
    sender.start()
    assert started.wait(10)
    time.sleep(0.3)
    server.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    sender.join(60)
    assert sub.outcome == "success", sub.errors
    assert sub.seconds > 1.5  # the upload really was in flight when SIGTERM arrived
    assert server.process.wait(35) == 0
    print(f"upload finished {time.monotonic() - signalled:.2f} s after SIGTERM; clean exit")
    server = start_own_server(database_url, data_dir, test_pki)
    try:
        check_invariants(engine, server.store_dir, [sub])
        assert check_retrievable(server.url, test_pki, [sub]) == 1
    finally:
        stop_server(server)


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace')}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fault_code(sub: Submission) -> str:
    assert sub.outcome == "fault", (sub.outcome, sub.errors)
    return sub.errors[0].rsplit("}", 1)[-1]


def test_full_or_read_only_store_fails_cleanly(database_url, engine, test_pki, tmp_path) -> None:
    data_dir = tmp_path / "server"
    store_dir = data_dir / "documents"
    with tmpfs(store_dir, "size=1m"):
        server = start_own_server(database_url, data_dir, test_pki)
        try:
            patient_id = new_patient(engine)
            xds = client(server.url, test_pki, patient_id)

            # Disk full: the attachment does not fit while being spooled.
            before = snapshot(engine, store_dir)
            too_big = Submission(patient_id, [Doc(b"x" * 100), Doc(os.urandom(1536 * 1024))])
            assert _fault_code(too_big.send(xds)) == "XDSRepositoryOutOfResources"
            assert snapshot(engine, store_dir) == before
            assert not list((store_dir / "tmp").iterdir()), "spooled parts left behind"

            # The store works again as soon as the request that filled it is gone.
            fits = Submission(patient_id, [Doc(os.urandom(20_000))])
            assert fits.send(xds).outcome == "success", fits.errors

            # Read-only blob tree (spool still writable): the put itself fails.
            with tmpfs(store_dir / "sha256", "ro,size=64k"):
                before = snapshot(engine, store_dir)
                refused = Submission(patient_id, [Doc(os.urandom(3000))])
                assert _fault_code(refused.send(xds)) == "XDSRepositoryError"
                assert snapshot(engine, store_dir) == before
                # A batch: its documents are written several at once, all fail, and every
                # write has ended before the request cleans its spool up.
                batch = Submission(patient_id, [Doc(os.urandom(3000)) for _ in range(12)])
                assert _fault_code(batch.send(xds)) == "XDSRepositoryError"
                assert snapshot(engine, store_dir) == before
                assert not list((store_dir / "tmp").iterdir()), "spooled parts left behind"
            check_invariants(engine, store_dir, [too_big, fits, refused, batch])

            # /ready says so while the store is full, and recovers once space is freed.
            filler = store_dir / "filler"
            with contextlib.suppress(OSError), filler.open("wb") as f:
                while True:
                    f.write(b"\0" * 65536)
            assert requests.get(server.url + "/ready", timeout=10).status_code == 503
            filler.unlink()
            assert requests.get(server.url + "/ready", timeout=10).status_code == 200
            metrics = requests.get(server.url + "/metrics", timeout=10).text
            assert 'dmp_xds_dependency_failures_total{component="store"} 3.0' in metrics
        finally:
            stop_server(server)


def test_metrics_count_across_workers(server, client_for, patient_id) -> None:
    """Several requests land on both workers; /metrics reports their sum whoever answers."""

    def total() -> float:
        text = requests.get(server.url + "/metrics", timeout=10).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("dmp_xds_requests_total{")
            and 'outcome="success"' in line
            and 'transaction="ITI-41"' in line
        )

    before = total()
    xds = client_for(patient_id)
    size = 0
    for n in range(6):
        content = os.urandom(1000 + n)
        size += len(content)
        sub = Submission(patient_id, [Doc(content)])
        assert sub.send(xds).outcome == "success", sub.errors
    assert all(total() == before + 6 for _ in range(4))  # any worker answers the same
    text = requests.get(server.url + "/metrics", timeout=10).text
    assert "dmp_xds_request_duration_seconds_bucket" in text
    assert "dmp_xds_signature_verification_failures_total" in text
    assert patient_id.split("^")[0] not in text  # no patient data in labels
