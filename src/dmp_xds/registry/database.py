"""Connecting to PostgreSQL: an external server (``DMP_XDS_DATABASE_URL``) or the embedded one
that ``pgserver`` runs under the data directory, and applying the Alembic migrations."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from psycopg2 import extensions as psycopg2_extensions
from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    Executable,
    Table,
    create_engine,
    event,
    exc,
)
from sqlalchemy.dialects.postgresql import psycopg2
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
    prepare: bool = False,
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
    event.listen(engine, "checkin", _transactional_in_pool)
    if prepare:
        event.listen(engine, "connect", _prepare_all)
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


def autocommit(conn: Connection) -> Connection:
    """Put ``conn`` in autocommit mode: each statement then commits on its own, in one round
    trip. A call's connection runs so outside its writes (call.py).

    In a transaction psycopg2 sends BEGIN in a round trip of its own before the first
    statement, and COMMIT is another: the replay claim, a query's statements and its audit
    event paid two round trips out of seven for nothing. A read loses nothing: under READ
    COMMITTED each statement takes its own snapshot anyway, and reads take no locks. Several
    statements joined by semicolons still run as one implicit transaction, ``SET LOCAL``
    included.

    The switch is psycopg2's ``autocommit`` flag, which sends nothing (SQLAlchemy's
    ``isolation_level`` option costs a ``SET`` round trip each way); the engine puts it back
    when the connection returns to the pool (:func:`make_engine`). What SQLAlchemy still calls
    a transaction in this mode is only its bookkeeping: its BEGIN and COMMIT send nothing.
    Refused inside a real transaction, which it would cut in two.
    """
    dbapi = conn.connection.dbapi_connection
    if not dbapi.autocommit:
        if conn.in_transaction():
            raise RuntimeError("autocommit mode asked for inside a transaction")
        dbapi.autocommit = True
    return conn


def begin_transaction(conn: Connection) -> None:
    """Open a real transaction on ``conn``, leaving autocommit mode if it was in it."""
    dbapi = conn.connection.dbapi_connection
    if dbapi.autocommit:
        if conn.in_transaction():
            conn.commit()  # bookkeeping only: every statement has committed already
        dbapi.autocommit = False
    if not conn.in_transaction():
        conn.begin()


def _transactional_in_pool(dbapi_connection: Any, record: Any) -> None:
    """A connection returns to the pool in transactional mode, whatever its last user did."""
    if dbapi_connection is not None and not dbapi_connection.closed:
        dbapi_connection.autocommit = False


def insert_rows(conn: Connection, *inserts: tuple[Table, Sequence[Mapping[str, Any]]]) -> None:
    """Insert rows into one or more tables, in ``conn``'s transaction, in one round trip.

    A submission writes five tables (submission set, documents, associations and the two
    locators). One statement per table cost a round trip each and ~70 us of SQLAlchemy's
    execution machinery, more than PostgreSQL takes to insert a row. psycopg2 binds parameters
    on the client (``mogrify``), so the INSERTs go as one multi-statement query, each a
    multi-row VALUES; PostgreSQL coerces every literal to its column's type. A failure (a
    duplicate key) is raised as SQLAlchemy's ``IntegrityError`` and aborts the caller's
    transaction, as one statement's would. Rows of a table all have the keys of its first
    row; tables without rows are skipped.

    Memory stays bounded whatever the batch (an EAI's thousands of documents): a VALUES list
    holds at most :data:`ROWS_PER_STATEMENT` rows, and the query goes out as soon as it
    reaches :data:`QUERY_BYTES` (the rest follows in as many round trips as needed).
    """
    dbapi = conn.connection.dbapi_connection
    encoding = psycopg2_extensions.encodings[dbapi.encoding]
    quote = conn.dialect.identifier_preparer.quote
    pending: list[bytes] = []
    size = 0

    def send() -> None:
        nonlocal size
        if pending:
            # Parameters are bound already: psycopg2 must not read '%' in values as markers.
            sql = b";".join(pending).decode(encoding)
            conn.exec_driver_sql(sql, execution_options={"no_parameters": True})
            pending.clear()
            size = 0

    with dbapi.cursor() as cursor:  # for mogrify: it sends nothing
        for table, rows in inserts:
            if not rows:
                continue
            columns = list(rows[0])
            row = "(" + ",".join(["%s"] * len(columns)) + ")"
            names = ",".join(map(quote, columns))  # our Table's names, quoted
            head = f"INSERT INTO {quote(table.name)} ({names}) VALUES ".encode()  # noqa: S608
            for start in range(0, len(rows), ROWS_PER_STATEMENT):
                chunk = rows[start : start + ROWS_PER_STATEMENT]
                statement = head + b",".join(
                    cursor.mogrify(row, [r[c] for c in columns]) for r in chunk
                )
                pending.append(statement)
                size += len(statement)
                if size >= QUERY_BYTES:
                    send()
    send()


ROWS_PER_STATEMENT = 1000
"""Rows in one VALUES list of :func:`insert_rows` (as SQLAlchemy's own multi-row inserts)."""
QUERY_BYTES = 8 << 20
"""Size at which :func:`insert_rows` sends what it has bound so far."""


class Precompiled:
    """A statement run on every call, compiled once to psycopg2's SQL and executed with
    ``exec_driver_sql``: ~30 us of CPU less per execution than ``conn.execute``, which looks
    the compiled form up in SQLAlchemy's cache and processes every parameter each time (in
    process, the audit insert: 141-161 us against 105-135). Results are the same rows.

    Only for statements whose parameters and columns need no SQLAlchemy type processing (text,
    integers, UUIDs, timestamps and arrays of these, which psycopg2 adapts itself). Every
    parameter is passed at each execution, except constants the statement binds itself (a
    LIMIT, say); an INSERT names its ``columns``. Statements built per call (a stored query's
    filters) go through ``conn.execute`` as usual.
    """

    def __init__(self, statement: Executable, *, columns: Sequence[str] | None = None) -> None:
        compiled = statement.compile(
            dialect=psycopg2.dialect(), column_keys=list(columns) if columns else None
        )
        self.sql = compiled.string
        self.constants = {k: v for k, v in compiled.params.items() if v is not None}

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> CursorResult:
        return conn.exec_driver_sql(self.sql, {**self.constants, **params})


class PreparedStatement:
    """A statement PostgreSQL plans once per connection instead of at every execution.

    For the few statements run by nearly every call whose planning costs more than their
    execution: the record gate's join of patient, record and authorisations plans in
    0.22-0.28 ms and runs in 0.03 ms. Declared once at import (:func:`prepared`), prepared on
    every new connection of an engine made with ``prepare=True`` (the server's, unless
    ``DMP_XDS_DB_PREPARE=false``), and run as ``EXECUTE``; on any other connection (tools,
    tests, PgBouncer in transaction mode) :meth:`execute` runs the statement itself. A
    statement on a partitioned table gains nothing (its generic plan prunes at run time, at
    about the cost of planning), so those are not declared here.
    """

    def __init__(self, name: str, statement: Executable) -> None:
        compiled = statement.compile(dialect=psycopg2.dialect(paramstyle="numeric_dollar"))
        self.name = name
        self.plain = Precompiled(statement)
        self.prepare_sql = f"PREPARE {name} AS {compiled}"
        order = compiled.positiontup or []
        self.execute_sql = f"EXECUTE {name}({', '.join(f'%({p})s' for p in order)})"

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> CursorResult:
        if self.name in conn.connection.info.get(_PREPARED, ()):
            return conn.exec_driver_sql(self.execute_sql, {**self.plain.constants, **params})
        return self.plain.execute(conn, params)


_DECLARED: dict[str, PreparedStatement] = {}
_PREPARED = "dmp_xds_prepared"  # pool record info: the names prepared on that connection


def prepared(name: str, statement: Executable) -> PreparedStatement:
    """Declare a prepared statement (at import, before the server's engine connects)."""
    if name in _DECLARED:
        raise ValueError(f"prepared statement {name!r} declared twice")
    _DECLARED[name] = PreparedStatement(name, statement)
    return _DECLARED[name]


def _prepare_all(dbapi_connection: Any, record: Any) -> None:
    """On each new connection: PREPARE every declared statement (prepared statements live as
    long as the session, whatever becomes of the transaction that made them)."""
    try:
        with dbapi_connection.cursor() as cursor:
            for declared in _DECLARED.values():
                cursor.execute(declared.prepare_sql)
        dbapi_connection.commit()
    except dbapi_connection.Error as error:  # a schema not migrated yet, say: run unprepared
        dbapi_connection.rollback()
        log.warning("statements not prepared", extra={"problem": str(error).strip()[:200]})
        record.info[_PREPARED] = frozenset()
        return
    record.info[_PREPARED] = frozenset(_DECLARED)


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
