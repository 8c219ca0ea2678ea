"""What every benchmark scenario shares: a real server on loopback (embedded PostgreSQL unless
``DMP_XDS_DATABASE_URL`` is set), patients, timing statistics, the table and the JSON file."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from sqlalchemy import Connection, text

from dmp_xds.client.vihf import VihfHeaders
from dmp_xds.client.xds import XdsClient
from dmp_xds.config import Settings
from dmp_xds.patients import vocabulary as dv
from dmp_xds.registry.database import EmbeddedPostgres, make_engine, migrate
from dmp_xds.security.pki import PROFESSIONALS, TestPki
from tests.fixtures.records import open_record

# Every benchmark client acts as this physician of the test PKI, authorised on every record,
# in reinforced indirect mode (AIR): it may submit, search and read (policy/access.py).
READER = "medecin"
READER_ID = next(p.name_id for p in PROFESSIONALS if p.key == READER)
# The repository the benchmark servers answer for (the server's own setting and default).
REPOSITORY_UID = os.environ.get("DMP_XDS_REPOSITORY_UNIQUE_ID") or Settings.repository_unique_id

RESULTS = Path(__file__).resolve().parent / "results"
T = TypeVar("T")


@dataclass
class BenchServer:
    url: str
    database_url: str
    data_dir: Path
    process: subprocess.Popen

    def worker_pids(self) -> list[int]:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.process.pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return [int(p) for p in out.split()]

    def peak_rss_mb(self) -> float:
        """Largest VmHWM (peak resident set) among the gunicorn workers, in MiB."""
        peak = 0
        for pid in self.worker_pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        return peak / 1024

    def new_patient(self, patient_id: str) -> None:
        engine = make_engine(self.database_url, pool_size=1)
        with engine.begin() as conn:
            open_patient(conn, patient_id)
        engine.dispose()

    # -- what the server spends: CPU, memory, its own request durations -----------------------

    def cpu_s(self) -> float:
        """CPU seconds (user + system) used so far by gunicorn: the master, its live workers
        and the workers it has reaped (recycled after ``max_requests``)."""
        return tree_cpu_s(self.process.pid)

    def postgres_cpu_s(self) -> float | None:
        """CPU seconds used so far by the PostgreSQL server (postmaster, backends, WAL writer,
        checkpointer...), when it runs on this machine; None otherwise."""
        pid = postmaster_pid(self.database_url)
        return tree_cpu_s(pid) if pid is not None else None

    def worker_memory_kib(self) -> dict[int, tuple[int, int]]:
        """(VmRSS, VmHWM) of each live worker, in KiB."""
        return {
            pid: (_status_kib(pid, "VmRSS"), _status_kib(pid, "VmHWM"))
            for pid in self.worker_pids()
        }

    def reset_peak_rss(self) -> bool:
        """Reset the workers' VmHWM to their current resident set (Linux ``clear_refs`` 5);
        False when the kernel refuses (then only sampling sees a phase's own peak)."""
        done = True
        for pid in self.worker_pids():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                done = False
        return done

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / "server.log"

    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def request_durations(self, since: int, action: str) -> list[float]:
        """The server's own durations (the request log's ``duration_ms``, in seconds) of the
        successful requests whose WS-Addressing action ends with ``action``, logged after
        byte ``since`` of the log."""
        with self.log_path.open("rb") as log:
            log.seek(since)
            data = log.read()
        durations = []
        for line in data.splitlines():
            if b'"duration_ms"' not in line or action.encode() not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if str(entry.get("action", "")).endswith(action) and entry.get("http_status") == 200:
                durations.append(entry["duration_ms"] / 1000)
        return durations


_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_ticks(pid: int, reaped: bool) -> int:
    """utime + stime of ``pid`` (and cutime + cstime: its waited-for children) in ticks."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "; field 3 is fields[0]
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    return [int(p) for p in out.split()]


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid``, its reaped children and its live children (one level)."""
    ticks = _stat_ticks(pid, reaped=True) + sum(_stat_ticks(c, False) for c in _children(pid))
    return ticks / _TICKS


@functools.cache
def postmaster_pid(database_url: str) -> int | None:
    """The PostgreSQL server's pid when it runs here (the parent of our backend), else None."""
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            raw = Path(f"/proc/{backend}/stat").read_text()  # while the backend lives
    except OSError:
        return None  # a remote server (or another pid namespace)
    finally:
        engine.dispose()
    parent = int(raw[raw.rindex(")") + 2 :].split()[1])
    comm = Path(f"/proc/{parent}/comm").read_text().strip() if parent > 1 else ""
    return parent if comm.startswith("postgres") else None


def _status_kib(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def open_patient(conn: Connection, patient_id: str) -> None:
    """Open the patient's DMP record and authorise the benchmark's physician."""
    open_record(conn, patient_id, authorised=(READER,))


def open_all_records(database_url: str) -> int:
    """Give every patient of a registry loaded before records existed an open record, and
    authorise the benchmark's physician on each (idempotent); return how many were opened."""
    engine = make_engine(database_url, pool_size=1)
    with engine.begin() as conn:
        opened = conn.execute(
            text(
                "INSERT INTO dmp_record (patient_key, status, created_at, consent_at, updated_at,"
                " other_ids, telecoms, addresses, relationships, opposition_bris_de_glace,"
                " opposition_acces_urgence, internet_account, ens_attached)"
                " SELECT patient_key, 'open', now(), now(), now(), '[]', '[]', '[]', '[]',"
                " false, false, false, false FROM patient ON CONFLICT DO NOTHING"
            )
        ).rowcount
        conn.execute(
            text(
                "INSERT INTO dmp_authorisation (patient_key, actor_type, actor_id, id_type,"
                " status, medecin_traitant, specialities, speciality_labels, started_at,"
                " last_action_at) SELECT patient_key, 'professional', :id, :id_type,"
                " 'authorised', false, '{}', '{}', now(), now() FROM dmp_record"
                " ON CONFLICT DO NOTHING"
            ),
            {"id": READER_ID, "id_type": dv.PS_ID_TYPE},
        )
        conn.execute(text("ANALYZE dmp_record, dmp_authorisation"))
    engine.dispose()
    return opened


# -- prepared requests: what a client sends, built (and its VIHF signed) before the clock starts --


@dataclass(frozen=True, slots=True)
class Prepared:
    """One HTTP request our client would send: path, Content-Type and body."""

    path: str
    content_type: str
    body: bytes


class _Captured(Exception):
    pass


class _CaptureAdapter(requests.adapters.BaseAdapter):
    """Keeps what the client would have sent instead of sending it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Prepared] = []

    def send(self, request: requests.PreparedRequest, **kw: Any) -> requests.Response:
        body = request.body
        data = body if isinstance(body, bytes) else b"".join(body)  # type: ignore[arg-type]
        self.sent.append(Prepared(request.path_url, request.headers["Content-Type"], data))
        raise _Captured

    def close(self) -> None:
        pass


def capture(calls: Sequence[Callable[[XdsClient], object]]) -> list[Prepared]:
    """Run each ``call(client)`` against a capturing transport; return the requests, each with
    the VIHF the client signed for it (a fresh assertion id each, valid for minutes)."""
    adapter = _CaptureAdapter()
    for call in calls:
        session = requests.Session()
        session.mount("http://", adapter)
        with contextlib.suppress(_Captured):
            call(XdsClient("http://bench.invalid", session=session))
    return adapter.sent


def post_prepared(
    url: str, prepared: Sequence[Prepared], seconds: float, accept: Callable[[bytes], bool]
) -> list[float]:
    """POST ``prepared`` in turn, for at most ``seconds``; the latency of each (request sent to
    answer read in full). Each answer must be HTTP 200 and satisfy ``accept``. The client's
    only work is the HTTP exchange, so nearly all of a shared machine's CPU goes to the
    server."""
    target = urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=600)
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    for request in prepared:
        if time.perf_counter() >= deadline:
            break
        started = time.perf_counter()
        connection.request(
            "POST", request.path, request.body, {"Content-Type": request.content_type}
        )
        answer = connection.getresponse()
        body = answer.read()
        samples.append(time.perf_counter() - started)
        if answer.status != 200 or not accept(body):
            raise AssertionError(f"HTTP {answer.status}: {body[:1000]!r}")
    connection.close()
    return samples


def succeeded(body: bytes) -> bool:
    """An XDS answer whose (first) RegistryResponse says Success."""
    return b"ResponseStatusType:Success" in body


def vihf(pki: TestPki, patient_id: str) -> VihfHeaders:
    """The header factory of the benchmark's physician acting for ``patient_id``."""
    return pki.vihf_headers(patient_id, READER, authentication_mode="INDIRECTE_RENFORCEE")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def database() -> Iterator[str]:
    """The database of a run, migrated: ``DMP_XDS_DATABASE_URL``, or an embedded PostgreSQL in
    a temporary directory for the block (so that several servers, say 1 then 2 workers, can
    share one registry)."""
    url = os.environ.get("DMP_XDS_DATABASE_URL")
    if url:
        migrate(url)
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix="dmp-xds-bench-pg-"))
    embedded = EmbeddedPostgres(root / "pg")
    try:
        url = embedded.start()
        migrate(url)
        yield url
    finally:
        embedded.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def server(
    workers: int = 2, extra_env: dict[str, str] | None = None, database_url: str | None = None
) -> Iterator[BenchServer]:
    """A server on a free loopback port; on ``database_url`` (from :func:`database`) or, by
    default, on ``DMP_XDS_DATABASE_URL`` or an embedded PostgreSQL of its own."""
    root = Path(tempfile.mkdtemp(prefix="dmp-xds-bench-"))
    embedded = None
    url = database_url or os.environ.get("DMP_XDS_DATABASE_URL")
    if not url:
        embedded = EmbeddedPostgres(root / "pg")
        url = embedded.start()
    migrate(url)
    port = _free_port()
    env = {
        **os.environ,
        "DMP_XDS_DATABASE_URL": url,
        "DMP_XDS_LISTEN": f"127.0.0.1:{port}",
        "DMP_XDS_DATA_DIR": str(root / "data"),
        "DMP_XDS_WORKERS": str(workers),
        **(extra_env or {}),
    }
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmp_xds.cli", "serve"], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/health", timeout=1).ok:
                    break
            except requests.RequestException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((root / "server.log").read_text()) from None
                time.sleep(0.2)
        yield BenchServer(base, url, root / "data", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(root, ignore_errors=True)


def drive(
    worker: Callable[..., tuple[T, float, float]], per_client: Sequence[tuple[Any, ...]]
) -> tuple[list[T], float]:
    """Run ``worker(start, *args)`` in one process per entry of ``per_client``; return their
    results and the measurement window in seconds.

    Each worker prepares (imports, PKI, documents), then calls ``start()`` (a barrier: every
    client begins at the same moment, once all have started) and returns ``(result,
    window_start, window_end)``, wall-clock times of its own calls. The window runs from the
    first start to the last end, so process start-up is not counted in a throughput.
    """
    with multiprocessing.Manager() as manager:
        barrier = manager.Barrier(len(per_client))
        start = functools.partial(barrier.wait, 300)
        with ProcessPoolExecutor(len(per_client)) as pool:
            futures = [pool.submit(worker, start, *args) for args in per_client]
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f.exception() for f in futures if f.done() and f.exception()]
            if failed:
                barrier.abort()  # the others stop waiting for a client that will never come
                raise failed[0]  # type: ignore[misc]
            parts = [f.result() for f in futures]
    window = max(end for _, _, end in parts) - min(begin for _, begin, _ in parts)
    return [result for result, _, _ in parts], window


def summarise(samples_s: list[float]) -> dict[str, float | None]:
    """n, median, p95 and p99 in ms of durations in seconds (None for an empty list)."""
    if not samples_s:
        return {"n": 0, "median_ms": None, "p95_ms": None, "p99_ms": None}
    ordered = sorted(samples_s)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return {
        "n": len(ordered),
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
    }


def report(scenario: str, rows: list[dict[str, object]]) -> Path:
    """Print ``rows`` as a table and write them, with the machine, to a JSON file."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print(" | ".join(c.ljust(widths[c]) for c in columns))
    print("-+-".join("-" * widths[c] for c in columns))
    for row in rows:
        print(" | ".join(_fmt(row.get(c)).ljust(widths[c]) for c in columns))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{scenario}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {
                "scenario": scenario,
                "machine": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                },
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"\nwritten: {path}")
    return path


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "" if value is None else str(value)
