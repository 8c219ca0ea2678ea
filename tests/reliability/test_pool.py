"""The connection pool pings a connection only after it sat idle (registry/database.py): a
connection the database killed meanwhile is replaced unseen, and a busy one costs no round
trip."""

from __future__ import annotations

import time

from sqlalchemy import event, text

from dmp_xds.registry import database
from dmp_xds.registry.database import make_engine


def _backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_idle_connection_killed_by_the_database_is_replaced(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1)
    killer = make_engine(database_url, pool_size=1)
    try:
        first = _backend_pid(engine)
        with killer.connect() as conn:
            assert conn.execute(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": first}
            ).scalar_one()
        time.sleep(database.PING_AFTER_IDLE_S + 0.2)
        # The pooled connection is dead: the ping notices, the pool connects again, and the
        # caller never sees the failure.
        second = _backend_pid(engine)
        assert second != first
    finally:
        engine.dispose()
        killer.dispose()


def test_busy_connection_is_not_pinged(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1)
    pings: list[int] = []
    real_ping = engine.dialect.do_ping

    def counting_ping(dbapi_connection) -> bool:
        pings.append(1)
        return real_ping(dbapi_connection)

    engine.dialect.do_ping = counting_ping  # type: ignore[method-assign]
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        for _ in range(20):
            _backend_pid(engine)
        assert pings == [] and len(statements) == 20
        time.sleep(database.PING_AFTER_IDLE_S + 0.2)
        _backend_pid(engine)
        assert pings == [1]
    finally:
        engine.dispose()
