"""ATNA export: each committed audit event also sent to a syslog collector (IHE ITI-20).

Messages are DICOM audit messages (audit/atna.py) in RFC 5424 syslog records, framed by octet
counting (RFC 5425: ``LEN SP record``) over TLS, mutual if a client certificate is configured
(``DMP_XDS_ATNA_URL=tls://host:port``), or over plain TCP for tests and local relays
(``tcp://host:port``).

The export must never slow down nor fail a request, and the database trail stays the source of
truth, so:

- :meth:`AtnaExporter.submit` (on the request's path) only reads a few identifiers from the
  request and puts the event in a bounded in-memory queue, one per worker process. When the
  queue is full the event is dropped and counted (``dmp_xds_atna_messages_total{result=
  "dropped"}``), never waited for. It never raises.
- A daemon thread renders the messages and sends them. When the collector cannot be reached
  it reconnects with exponential backoff (0.5 s doubling to 30 s, with jitter), keeping the
  message it failed to send; events arriving meanwhile wait in the queue, or are dropped.
- Syslog over TCP has no acknowledgement: a message written just before the collector died
  may be lost unnoticed. Before each write the sender checks that the collector has not
  closed the connection, which catches the common case (a collector restart). A collector
  that needs every event reconciles with the trail (``dmp-xds trail``).
- At exit the thread gets a short grace period to drain the queue.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from .atna import RequestFacts, Source, audit_message, request_facts
from .trail import AuditEvent

log = logging.getLogger("dmp_xds.audit.export")

# RFC 5424: facility 10 (security/authorisation), severity 5 (notice), as IHE ATNA asks.
PRIORITY = 10 * 8 + 5
APP_NAME = "dmp-xds"
MSGID = "IHE+RFC-3881"
BOM = b"\xef\xbb\xbf"
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
DRAIN_AT_EXIT_S = 2.0

Counter = Callable[[str], None]  # result: sent, dropped, send_error, render_error


@dataclass(frozen=True)
class Collector:
    """Where messages go: ``tls://host:port`` or ``tcp://host:port``."""

    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Collector:
        parts = urlsplit(url)
        if parts.scheme not in ("tls", "tcp"):
            raise ValueError(
                f"ATNA collector URL must be tls://host:port or tcp://host:port: {url}"
            )
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(f"ATNA collector URL needs a host and a port: {url}")
        return cls(parts.scheme, parts.hostname, port)


def tls_context(
    ca_file: Path | None, cert_file: Path | None, key_file: Path | None
) -> ssl.SSLContext:
    """TLS 1.2 or later, the collector's certificate checked (against ``ca_file`` or the
    system's CAs) with its host name; our certificate presented when configured (ATNA's node
    authentication is mutual)."""
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return context


def syslog_frame(message: bytes, *, host: str, when: str, process_id: str) -> bytes:
    """One RFC 5424 record (``<PRI>1 TIMESTAMP HOST APP PROCID MSGID -`` then BOM and the
    XML), framed for RFC 5425 by its length in octets."""
    header = f"<{PRIORITY}>1 {when} {host} {APP_NAME} {process_id} {MSGID} - ".encode("ascii")
    record = header + BOM + message
    return str(len(record)).encode("ascii") + b" " + record


def _syslog_name(value: str) -> str:
    """HOSTNAME: printable US-ASCII without spaces, at most 255 characters (RFC 5424)."""
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:255]
    return cleaned or "-"


class AtnaExporter:
    """Per-process queue and sender thread (module docstring)."""

    def __init__(
        self,
        collector: Collector,
        source: Source,
        *,
        context: ssl.SSLContext | None = None,
        queue_size: int = 10_000,
        timeout_s: float = 5.0,
        count: Counter | None = None,
    ) -> None:
        if collector.scheme == "tls" and context is None:
            raise ValueError("a tls:// collector needs a TLS context")
        self.collector = collector
        self.source = source
        self.context = context
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self._count = count or (lambda result: None)
        self._lock = threading.Lock()
        self._pid = -1
        self._queue: queue.Queue[tuple[AuditEvent, RequestFacts | None] | None]
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._socket: Any = None
        self._host = _syslog_name(source.host)
        atexit.register(self.close)

    # --- the request's side ----------------------------------------------------------------------
    def submit(self, event: AuditEvent, payload: etree._Element | None = None) -> None:
        """Queue ``event`` for export; returns at once, never raises."""
        try:
            self._started()
            facts = request_facts(event, payload)
            self._queue.put_nowait((event, facts))
        except queue.Full:
            self._count("dropped")
        except Exception:
            log.exception("ATNA export: event not queued", extra={"request_id": event.request_id})

    def _started(self) -> None:
        """Start the queue and thread in this process (lazily: after gunicorn's fork)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.Queue(maxsize=self.queue_size)
            self._stop = threading.Event()
            self._socket = None
            self._thread = threading.Thread(target=self._run, name="atna-export", daemon=True)
            self._thread.start()
            self._pid = os.getpid()

    def close(self, timeout_s: float = DRAIN_AT_EXIT_S) -> None:
        """Let the thread send what is queued for up to ``timeout_s``, then stop it."""
        thread = self._thread
        if thread is None or self._pid != os.getpid() or not thread.is_alive():
            return
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)  # full: the join below is the only grace
        thread.join(timeout_s)
        self._stop.set()
        self._disconnect()

    # --- the sender thread ---------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                break
            event, facts = item
            try:
                message = etree.tostring(
                    audit_message(event, self.source, facts),
                    xml_declaration=True,
                    encoding="UTF-8",
                )
                frame = syslog_frame(
                    message,
                    host=self._host,
                    when=_now_text(),
                    process_id=self.source.process_id,
                )
            except Exception:
                log.exception("ATNA export: message not rendered")
                self._count("render_error")
                continue
            while not self._stop.is_set():
                if self._send(frame):
                    if failures:
                        log.info("ATNA collector reachable again", extra=self._where())
                    failures = 0
                    self._count("sent")
                    break
                failures += 1
                self._count("send_error")
                delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** min(failures - 1, 10))
                self._stop.wait(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter only
        self._disconnect()

    def _send(self, frame: bytes) -> bool:
        try:
            if self._socket is not None and _peer_closed(self._socket, self.timeout_s):
                self._disconnect()
            if self._socket is None:
                self._socket = self._connect()
            self._socket.sendall(frame)
            return True
        except (OSError, ssl.SSLError) as exc:
            self._disconnect()
            log.warning(
                "ATNA collector unreachable", extra={**self._where(), "problem": type(exc).__name__}
            )
            return False

    def _connect(self) -> Any:
        raw = socket.create_connection(
            (self.collector.host, self.collector.port), timeout=self.timeout_s
        )
        if self.collector.scheme != "tls" or self.context is None:
            return raw
        try:
            return self.context.wrap_socket(raw, server_hostname=self.collector.host)
        except BaseException:
            raw.close()
            raise

    def _disconnect(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _where(self) -> dict[str, object]:
        return {
            "collector": f"{self.collector.scheme}://{self.collector.host}:{self.collector.port}"
        }


def _peer_closed(sock: Any, timeout_s: float) -> bool:
    """Whether the collector closed the connection (it never sends data, so a readable socket
    means end of stream, or TLS housekeeping such as a session ticket)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        sock.settimeout(0)
        return sock.recv(1) == b""
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except OSError:
        return True
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(timeout_s)


def _now_text() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def exporter_from_settings(settings: Any, count: Counter | None = None) -> AtnaExporter | None:
    """The exporter ``DMP_XDS_ATNA_*`` configure, or None when ``DMP_XDS_ATNA_URL`` is unset."""
    if not settings.atna_url:
        return None
    collector = Collector.parse(settings.atna_url)
    host = socket.gethostname()
    source = Source(
        audit_source_id=settings.atna_source_id or host,
        host=host,
        repository_unique_id=settings.repository_unique_id,
    )
    context = (
        tls_context(settings.atna_ca, settings.atna_cert, settings.atna_key)
        if collector.scheme == "tls"
        else None
    )
    return AtnaExporter(
        collector,
        source,
        context=context,
        queue_size=settings.atna_queue_size,
        timeout_s=settings.atna_timeout_s,
        count=count,
    )
