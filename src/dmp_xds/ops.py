"""Operations endpoints and infrastructure failures: ``/ready``, ``/metrics``, and how a
database or store outage is answered.

Why these live together: each answers the operator's question "is this instance able to serve,
and how is it doing?" without touching the XDS layers. ``/health`` (in ``app.py``) only says
the process answers; ``/ready`` says whether a request would succeed now (database and store
reachable), so that a load balancer stops routing to an instance whose dependencies are gone
without restarting it (it recovers by itself: see :func:`infrastructure_fault`).

Metrics across gunicorn workers: each worker is a separate process with its own counters, and a
scrape reaches one worker at random. prometheus_client's multiprocess mode makes every worker
write its samples to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR``, and ``/metrics`` sums
the files of all workers, dead ones included (counters stay monotonic when gunicorn recycles a
worker after ``max_requests``). ``serve`` sets the directory in the master before the workers
fork (:func:`prepare_metrics_dir`); prometheus_client chooses its storage when it is first
imported, so nothing in the master may import it earlier. Without that variable (tests building
the app in-process) the metrics are simply per process.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy import exc as sa_exc

from .audit.trail import TRANSACTIONS
from .errors import ErrorCode, FaultCode, SoapFault
from .metadata import vocabulary as v
from .namespaces import RS

log = logging.getLogger("dmp_xds.ops")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
READY_DB_TIMEOUT_MS = 2000
"""``/ready`` must answer well within a probe's timeout even when the database hangs."""

# Transaction labels come from the audit trail's map of SOAP actions: a bounded set, never
# anything taken from the request.
_STATUS_OUTCOMES = {
    v.RESPONSE_SUCCESS: "success",
    v.RESPONSE_PARTIAL: "partial",
    v.RESPONSE_FAILURE: "failure",
}
# Security checks that are part of verifying the VIHF's XML signature (security/signature.py).
SIGNATURE_CHECKS = frozenset(
    {"signature", "signature_structure", "key_info", "algorithm", "transforms", "certificate"}
)

# --- infrastructure failures -------------------------------------------------------------------

_OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_STORE_BROKEN = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})


class InfrastructureFault(SoapFault):
    """A Receiver fault for a dependency that failed (database, document store).

    Why a fault and not a RegistryResponse: the failure is not about the submission, it can
    happen before any handler exists (an attachment is spooled to the store while the request
    is read), and with the database down the call cannot be audited, which the app requires
    before an XDS answer leaves. The subcode is the standard XDS error code (in the ebRIM ``rs``
    namespace) so that a client can tell "retry later" from a real error.
    """

    def __init__(self, component: str, code: ErrorCode, reason: str) -> None:
        super().__init__(FaultCode.RECEIVER, f"{code.value}: {reason}", subcode=(RS, code.value))
        self.component = component
        self.xds_code = code


def infrastructure_fault(exc: BaseException) -> InfrastructureFault | None:
    """Classify an exception that escaped a handler: a dependency failure, or None.

    Database: a refused or lost connection, a pool wait that timed out, or a cancelled
    statement (``statement_timeout``) or serialisation conflict. No transaction can be
    half-applied: PostgreSQL rolls back whatever was not committed. Store: no space left
    (XDSRepositoryOutOfResources), read-only or failing storage (XDSRepositoryError).
    """
    if isinstance(exc, sa_exc.OperationalError):
        pgcode = getattr(exc.orig, "pgcode", None) or ""
        # 57014 query_canceled (statement_timeout), 40xxx transaction rollback (deadlock,
        # serialisation), 55P03 lock_not_available: the database is there but overloaded.
        if pgcode == "57014" or pgcode.startswith("40") or pgcode == "55P03":
            return InfrastructureFault(
                "database", ErrorCode.REGISTRY_BUSY, "the registry database is busy; retry later"
            )
        return _database_down()
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.InterfaceError):
        return _database_down()
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return _database_down()
    if isinstance(exc, OSError) and exc.errno in _OUT_OF_SPACE:
        return InfrastructureFault(
            "store",
            ErrorCode.REPOSITORY_OUT_OF_RESOURCES,
            "the document store has no space left; nothing was registered",
        )
    if isinstance(exc, OSError) and exc.errno in _STORE_BROKEN:
        return InfrastructureFault(
            "store",
            ErrorCode.REPOSITORY_ERROR,
            "the document store cannot be written; nothing was registered",
        )
    if type(exc).__name__ == "S3StoreError":  # s3store is optional: no import here
        return InfrastructureFault(
            "store",
            ErrorCode.REPOSITORY_ERROR,
            "the object store refused the document; nothing was registered",
        )
    return None


def _database_down() -> InfrastructureFault:
    return InfrastructureFault(
        "database",
        ErrorCode.REGISTRY_NOT_AVAILABLE,
        "the registry database is not reachable; retry later",
    )


# --- readiness ---------------------------------------------------------------------------------


def database_problem(engine: Engine) -> str | None:
    """None if a trivial query answers within :data:`READY_DB_TIMEOUT_MS`, else why not."""
    try:
        with engine.connect() as conn:
            conn.execute(text(f"SET LOCAL statement_timeout = {READY_DB_TIMEOUT_MS}"))
            conn.execute(text("SELECT 1")).scalar_one()
            conn.rollback()
    except Exception as exc:
        return f"database: {type(exc).__name__}"
    return None


def store_problem(store: Any) -> str | None:
    """None if the store can take a document now, else why not.

    Filesystem: a file can be created in the spool directory (where attachments land first; it
    is on the store's filesystem). S3: HEAD of the bucket answers, and the local spool is
    writable too.
    """
    try:
        with tempfile.TemporaryFile(dir=store.spool_dir, prefix="ready-") as probe:
            probe.write(b"ready")
            probe.flush()
    except OSError as exc:
        return f"store spool: {errno.errorcode.get(exc.errno or 0, type(exc).__name__)}"
    client, bucket = getattr(store, "client", None), getattr(store, "bucket", None)
    if client is not None and bucket is not None:
        try:
            client.head_bucket(Bucket=bucket)
        except Exception as exc:
            return f"store bucket: {type(exc).__name__}"
    return None


# --- metrics -----------------------------------------------------------------------------------


def prepare_metrics_dir(data_dir: Path) -> Path:
    """Create an empty ``<data dir>/metrics`` and point prometheus_client at it.

    Called by ``serve`` in the gunicorn master, before any worker forks and before anything
    imports prometheus_client. Files left by a previous run are removed: counters restart at
    zero with the server, which Prometheus's ``rate()`` understands as a counter reset.
    """
    directory = (Path(data_dir) / "metrics").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob("*.db"):
        leftover.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def worker_exited(_server: Any, worker: Any) -> None:
    """gunicorn ``child_exit`` hook: drop a dead worker's live gauges (its counters stay)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def outcome_of(facts: dict[str, Any]) -> str:
    """success / partial / failure (the RegistryResponse status) or fault / security_fault."""
    if facts.get("security_check"):
        return "security_fault"
    if facts.get("fault"):
        return "fault"
    return _STATUS_OUTCOMES.get(facts.get("status") or "", "failure")


class Operations:
    """``/ready`` and ``/metrics`` for one worker, plus recording what each request did."""

    def __init__(self, engine: Engine, store: Any) -> None:
        self.engine = engine
        self.store = store
        from . import metrics  # after PROMETHEUS_MULTIPROC_DIR is set (module docstring)

        self.metrics = metrics

    def ready(self, start_response: Callable) -> list[bytes]:
        import json

        started = time.perf_counter()
        problems = [p for p in (database_problem(self.engine), store_problem(self.store)) if p]
        body = json.dumps(
            {
                "status": "unavailable" if problems else "ready",
                "problems": problems,
                "checked_in_ms": round((time.perf_counter() - started) * 1000, 1),
            }
        ).encode()
        status = "503 Service Unavailable" if problems else "200 OK"
        start_response(
            status,
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]

    def metrics_page(self, start_response: Callable) -> list[bytes]:
        content_type, body = self.metrics.render()
        start_response(
            "200 OK",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]

    def observe(self, facts: dict[str, Any], seconds: float) -> None:
        """Count one SOAP request; never lets a metrics problem fail the request."""
        try:
            self.metrics.record_request(
                TRANSACTIONS.get(facts.get("action") or "", "unknown"),
                outcome_of(facts),
                seconds,
                documents=int(facts.get("documents") or 0),
                stored_bytes=int(facts.get("bytes") or 0),
                security_check=facts.get("security_check"),
                signature_checks=SIGNATURE_CHECKS,
                component=facts.get("component"),
            )
        except Exception:
            log.exception("metrics not recorded", extra={"request_id": facts.get("request_id")})
