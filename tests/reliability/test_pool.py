"""The server's connections (registry/database.py): the pool pings a connection only after it
sat idle, so a connection the database killed meanwhile is replaced unseen and a busy one costs
no round trip; the hot statements declared prepared are prepared on every new connection, and
give the same answers as when run unprepared."""

from __future__ import annotations

import time

from sqlalchemy import event, text

from dmp_xds.patients.authorisations import access_facts
from dmp_xds.registry import database
from dmp_xds.registry.database import make_engine
from dmp_xds.security.pki import PROFESSIONALS
from tests.fixtures.records import DEFAULT_READER, new_record


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


def _statements(engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_prepared_statement_answers_as_the_plain_one(database_url: str, engine) -> None:
    patient_id = new_record(engine)
    unknown = "4956928000999^^^&1.2.250.1.213.1.4.10&ISO"
    reader = next(p for p in PROFESSIONALS if p.key == DEFAULT_READER).name_id
    prepared = make_engine(database_url, pool_size=1, prepare=True)
    seen = _statements(prepared)
    answers = []
    try:
        for patient, professional, structure in (
            (patient_id, reader, None),  # authorised
            (patient_id, "899700000000", "10B0999991"),  # not authorised
            (unknown, reader, None),  # no record
        ):
            with engine.connect() as conn:
                plain = access_facts(conn, patient, professional, structure)
            with prepared.connect() as conn:
                assert access_facts(conn, patient, professional, structure) == plain
            answers.append((plain.record_status, plain.authorised))
        assert answers == [("open", True), ("open", False), (None, False)]
        assert sum(s.startswith("EXECUTE dmp_xds_access_facts(") for s in seen) == 3, seen
    finally:
        prepared.dispose()


def test_a_new_connection_is_prepared_again(database_url: str, engine) -> None:
    patient_id = new_record(engine)
    reader = next(p for p in PROFESSIONALS if p.key == DEFAULT_READER).name_id
    prepared = make_engine(database_url, pool_size=1, prepare=True)
    try:
        with prepared.connect() as conn:
            before = access_facts(conn, patient_id, reader)
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": _backend_pid(prepared)})
        time.sleep(database.PING_AFTER_IDLE_S + 0.2)
        seen = _statements(prepared)
        with prepared.connect() as conn:  # a new session: the statement is prepared anew
            assert access_facts(conn, patient_id, reader) == before
        assert before.authorised and any(s.startswith("EXECUTE") for s in seen), seen
    finally:
        prepared.dispose()
