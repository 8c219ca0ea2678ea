"""The Prometheus metrics of one worker process (aggregated across workers by ``/metrics``).

Import this module only through :class:`dmp_xds.ops.Operations`: prometheus_client decides at
its first import whether values live in per-process memory or in the shared multiprocess files,
so ``PROMETHEUS_MULTIPROC_DIR`` must be set before (``ops.prepare_metrics_dir``).

Labels are bounded sets chosen by the code (transaction name, outcome, security check name,
component), never values from a request: no patient, professional or document identifier can
reach a label, and the number of series stays fixed.
"""

from __future__ import annotations

import os
from collections.abc import Collection

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

# From a 5 ms stored query to a 256 MB upload near the 120 s request timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter(
    "dmp_xds_requests_total",
    "SOAP requests by transaction (ITI-xx from the SOAP action) and outcome "
    "(success, partial, failure, fault, security_fault).",
    ["transaction", "outcome"],
)
LATENCY = Histogram(
    "dmp_xds_request_duration_seconds",
    "Time from reading the request to having the answer ready, by transaction.",
    ["transaction"],
    buckets=LATENCY_BUCKETS,
)
DOCUMENTS_STORED = Counter(
    "dmp_xds_documents_stored_total",
    "Documents acknowledged by a successful ITI-41 (a resubmitted identical content counts).",
)
BYTES_STORED = Counter(
    "dmp_xds_document_bytes_stored_total",
    "Bytes of the documents acknowledged by successful ITI-41 submissions.",
)
SIGNATURE_FAILURES = Counter(
    "dmp_xds_signature_verification_failures_total",
    "VIHF assertions refused because their XML signature, certificate or algorithm failed.",
)
SECURITY_REFUSALS = Counter(
    "dmp_xds_security_refusals_total",
    "Calls refused by the security layer, by the check that refused them.",
    ["check"],
)
DEPENDENCY_FAILURES = Counter(
    "dmp_xds_dependency_failures_total",
    "Requests answered with a Receiver fault because the database or the store failed.",
    ["component"],
)
ATNA_MESSAGES = Counter(
    "dmp_xds_atna_messages_total",
    "ATNA audit messages by result: sent, dropped (export queue full), send_error (an attempt "
    "that failed; the message is retried), render_error.",
    ["result"],
)


def record_request(
    transaction: str,
    outcome: str,
    seconds: float,
    *,
    documents: int,
    stored_bytes: int,
    security_check: str | None,
    signature_checks: Collection[str],
    component: str | None = None,
) -> None:
    REQUESTS.labels(transaction, outcome).inc()
    LATENCY.labels(transaction).observe(seconds)
    if transaction == "ITI-41" and outcome == "success":
        DOCUMENTS_STORED.inc(documents)
        BYTES_STORED.inc(stored_bytes)
    if security_check:
        SECURITY_REFUSALS.labels(security_check).inc()
        if security_check in signature_checks:
            SIGNATURE_FAILURES.inc()
    if component:
        DEPENDENCY_FAILURES.labels(component).inc()


def render() -> tuple[str, bytes]:
    """The exposition text: every worker's samples summed in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return CONTENT_TYPE_LATEST, generate_latest(registry)
    return CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
