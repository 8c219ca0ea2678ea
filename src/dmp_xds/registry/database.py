"""Connecting to PostgreSQL: an external server (``DMP_XDS_DATABASE_URL``) or the embedded one
that ``pgserver`` runs under the data directory, and applying the Alembic migrations."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url

from ..resources import resource_dir

log = logging.getLogger(__name__)


def normalise_url(url: str) -> str:
    """Use the psycopg2 driver whatever scheme the operator wrote (``postgres://``,
    ``postgresql://``)."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def make_engine(
    url: str,
    *,
    pool_size: int = 4,
    connect_timeout_s: int = 10,
    statement_timeout_ms: int | None = None,
) -> Engine:
    """An engine sized for one gunicorn sync worker (one request at a time, plus headroom).

    Fail fast rather than hang when PostgreSQL is gone: ``connect_timeout`` bounds a connection
    attempt (an unreachable host otherwise waits for the TCP timeout, minutes), and the server
    passes a ``statement_timeout`` so that no request waits on a stuck query or lock longer than
    its client would. A connection that sat idle in the pool is pinged before use (see
    :func:`_ping_when_idle`), so that one killed by a database restart is replaced and the
    server recovers without being restarted itself.
    """
    connect_args: dict[str, Any] = {"connect_timeout": connect_timeout_s}
    if statement_timeout_ms:
        connect_args["options"] = f"-c statement_timeout={int(statement_timeout_ms)}"
    engine = create_engine(
        normalise_url(url),
        pool_size=pool_size,
        max_overflow=2,
        pool_recycle=1800,
        pool_timeout=connect_timeout_s,
        connect_args=connect_args,
    )
    _ping_when_idle(engine)
    return engine


# A connection back in the pool for less than this is used without a ping.
PING_AFTER_IDLE_S = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only if it sat idle for PING_AFTER_IDLE_S.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: one more round trip per request
    (a twelfth of a GetDocuments'), and of no use under load, where a connection is reused
    within milliseconds. A connection that dies while in use fails its request, and
    SQLAlchemy then invalidates the whole pool (every connection older than the failure is
    replaced at its next checkout); so only a restart during a pause of less than a second
    can cost one request per connection, as it would while that connection was in use.
    """

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _idle(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            alive = not engine.dialect.is_disconnect(error, dbapi_connection, None)
            if alive:
                raise
        if not alive:
            raise exc.DisconnectionError("connection closed by the database")  # pool retries


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resource_dir("migrations")))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    command.upgrade(cfg, "head")


class EmbeddedPostgres:
    """PostgreSQL run by ``pgserver`` with its data under ``data_dir`` (Unix socket only).

    pgserver runs initdb and postgres as a dedicated ``pgserver`` user when we are root and makes
    the parent directories of ``data_dir`` traversable; operators should prefer an external
    server in production.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        import pgserver  # imported here: only the embedded mode needs it

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(str(self.data_dir), cleanup_mode="stop")
        log.info("embedded PostgreSQL started", extra={"data_dir": str(self.data_dir)})
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
