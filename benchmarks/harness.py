"""What every benchmark scenario shares: a real server on loopback (embedded PostgreSQL unless
``DMP_XDS_DATABASE_URL`` is set), patients, timing statistics, the table and the JSON file."""

from __future__ import annotations

import contextlib
import json
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
from sqlalchemy import Connection, text

from dmp_xds.client.vihf import VihfHeaders
from dmp_xds.patients import authorisations as auth
from dmp_xds.patients import vocabulary as dv
from dmp_xds.patients.records import Identity, Oppositions, create_record
from dmp_xds.registry.database import EmbeddedPostgres, make_engine, migrate
from dmp_xds.security.pki import PROFESSIONALS, TestPki

# Every benchmark client acts as this physician of the test PKI, authorised on every record,
# in reinforced indirect mode (AIR): it may submit, search and read (policy/access.py).
READER = "medecin"
READER_ID = next(p.name_id for p in PROFESSIONALS if p.key == READER)

RESULTS = Path(__file__).resolve().parent / "results"


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


def open_patient(conn: Connection, patient_id: str) -> None:
    """Open the patient's DMP record and authorise the benchmark's physician."""
    record = create_record(conn, patient_id, Identity(), Oppositions(), consent=True, by="bench")
    actor = auth.Actor(auth.PROFESSIONAL, READER_ID, dv.PS_ID_TYPE)
    auth.authorise(conn, record.patient_key, actor, by="benchmark")


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


def vihf(pki: TestPki, patient_id: str) -> VihfHeaders:
    """The header factory of the benchmark's physician acting for ``patient_id``."""
    return pki.vihf_headers(patient_id, READER, authentication_mode="INDIRECTE_RENFORCEE")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def server(workers: int = 2, extra_env: dict[str, str] | None = None) -> Iterator[BenchServer]:
    root = Path(tempfile.mkdtemp(prefix="dmp-xds-bench-"))
    embedded = None
    url = os.environ.get("DMP_XDS_DATABASE_URL")
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


def summarise(samples_s: list[float]) -> dict[str, float]:
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
