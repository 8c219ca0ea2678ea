"""The round-trip and per-statement savers of registry/database.py, against the real
PostgreSQL: ``Precompiled`` statements answer as SQLAlchemy's own execution does; ``insert_rows``
(several tables' INSERTs, bound on the client, in one query) writes every value exactly as a
bound statement would and fails as one would; ``autocommit`` / ``begin_transaction`` switch a
connection between one-statement transactions and a real one, and the pool never hands out a
connection left in autocommit mode."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    any_,
    bindparam,
    event,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError

from dmp_xds.registry import database
from dmp_xds.registry.database import (
    Precompiled,
    autocommit,
    begin_transaction,
    insert_rows,
    make_engine,
)

_metadata = MetaData()
_left = Table(
    "round_trip_left",
    _metadata,
    Column("id", Uuid, primary_key=True),
    Column("size", BigInteger),  # a column named like a keyword elsewhere: quoted
    Column("label", Text, nullable=False),
    Column("codes", ARRAY(Text), nullable=False),
)
_right = Table(
    "round_trip_right",
    _metadata,
    Column("n", Integer, primary_key=True),
    Column("note", Text),
)

# What a client-side binding could get wrong: percent signs (psycopg2's own markers), quotes,
# backslashes, a semicolon (the statement separator), non-ASCII and SQL-looking text.
_AWKWARD = [
    "100% sure, %s and %(name)s",
    'O\'Brien "quoted" \\ back\\slash',
    "a; DROP TABLE round_trip_right; --",
    "Hélène Œuvre – 東京 – \U0001f600",
    "",
]


@pytest.fixture()
def tables(engine: Engine):
    _metadata.create_all(engine)
    try:
        yield
    finally:
        _metadata.drop_all(engine)


def test_values_are_written_exactly(engine: Engine, tables) -> None:
    rows = [
        {"id": uuid.uuid4(), "size": 2**40 + i, "label": label, "codes": [label, "x"]}
        for i, label in enumerate(_AWKWARD)
    ]
    rows.append({"id": uuid.uuid4(), "size": None, "label": "empty", "codes": []})
    with engine.begin() as conn:
        insert_rows(conn, (_left, rows), (_right, [{"n": 1, "note": None}]), (_right, []))
    with engine.connect() as conn:
        stored = {r.id: r for r in conn.execute(select(_left))}
        assert conn.execute(select(_right.c.n, _right.c.note)).all() == [(1, None)]
    assert len(stored) == len(rows)
    for row in rows:
        got = stored[row["id"]]
        assert (got.size, got.label, got.codes) == (row["size"], row["label"], row["codes"])


def test_a_duplicate_key_fails_the_whole_batch(engine: Engine, tables) -> None:
    taken = uuid.uuid4()
    with engine.begin() as conn:
        insert_rows(conn, (_left, [{"id": taken, "size": 1, "label": "a", "codes": []}]))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        insert_rows(
            conn,
            (_right, [{"n": 7, "note": "before the duplicate"}]),
            (_left, [{"id": taken, "size": 2, "label": "b", "codes": []}]),
        )
    with engine.connect() as conn:
        assert conn.execute(select(_right)).all() == []  # rolled back with the transaction
        assert conn.execute(select(_left.c.label)).scalars().all() == ["a"]


def test_batch_is_one_round_trip(engine: Engine, tables) -> None:
    sent: list[str] = []

    def count(conn, cursor, statement, *rest) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.begin() as conn:
            insert_rows(
                conn,
                (_left, [{"id": uuid.uuid4(), "size": 1, "label": "a", "codes": []}]),
                (_right, [{"n": n, "note": str(n)} for n in range(50)]),
            )
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(sent) == 1


def test_a_large_batch_goes_in_bounded_pieces(engine: Engine, tables, monkeypatch) -> None:
    """Thousands of rows: VALUES lists of at most ROWS_PER_STATEMENT rows, and a round trip
    whenever the bound SQL reaches QUERY_BYTES, so memory does not grow with the batch."""
    monkeypatch.setattr(database, "ROWS_PER_STATEMENT", 7)
    monkeypatch.setattr(database, "QUERY_BYTES", 4096)
    sent: list[str] = []

    def count(conn, cursor, statement, *rest) -> None:
        sent.append(statement)

    rows = [{"n": n, "note": f"row {n} " + "x" * 100} for n in range(500)]
    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.begin() as conn:
            insert_rows(conn, (_right, rows))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    with engine.connect() as conn:
        assert conn.execute(select(_right.c.n).order_by(_right.c.n)).scalars().all() == list(
            range(500)
        )
    assert 1 < len(sent) < 500
    assert all(len(sql) < 4096 + 8 * 150 for sql in sent)
    assert all(sql.count("INSERT INTO") * 7 >= sql.count("row ") for sql in sent)


def test_autocommit_commits_each_statement_and_the_pool_resets_it(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1)
    other = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            autocommit(conn)
            conn.execute(text("CREATE TABLE round_trip_auto (n int)"))
            conn.execute(text("INSERT INTO round_trip_auto VALUES (1)"))
            # Committed already: another connection sees it while this one stays open.
            with other.connect() as seen:
                assert seen.execute(text("SELECT n FROM round_trip_auto")).scalars().all() == [1]
            # SET LOCAL lasts for its own query only (an implicit transaction of its own).
            local = (
                "SET LOCAL synchronous_commit = off; SELECT current_setting('synchronous_commit')"
            )
            assert conn.exec_driver_sql(local).scalar_one() == "off"
            assert (
                conn.execute(text("SELECT current_setting('synchronous_commit')")).scalar_one()
                == "on"
            )
            # A real transaction after it: rolled back, nothing of it stays.
            begin_transaction(conn)
            conn.execute(text("INSERT INTO round_trip_auto VALUES (2)"))
            conn.rollback()
            assert conn.execute(text("SELECT count(*) FROM round_trip_auto")).scalar_one() == 1
            conn.rollback()
            autocommit(conn)
        # Back from the pool (the same connection: pool of one), it is transactional again.
        with engine.connect() as conn:
            assert conn.connection.dbapi_connection.autocommit is False
            conn.execute(text("INSERT INTO round_trip_auto VALUES (3)"))
            conn.rollback()
            assert conn.execute(text("SELECT count(*) FROM round_trip_auto")).scalar_one() == 1
            conn.execute(text("DROP TABLE round_trip_auto"))
            conn.commit()
    finally:
        engine.dispose()
        other.dispose()


def test_autocommit_refuses_to_cut_a_transaction_in_two(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))  # a transaction begins
        with pytest.raises(RuntimeError):
            autocommit(conn)
        conn.rollback()


def test_precompiled_statements_answer_as_sqlalchemy_does(engine: Engine, tables) -> None:
    """A hot statement compiled once (``Precompiled``) gives the rows ``conn.execute`` gives:
    bound arrays, UUIDs, a constant the statement binds itself (LIMIT), an INSERT naming its
    columns with RETURNING, and a text statement."""
    ids = [uuid.uuid4() for _ in range(3)]
    insert = _left.insert().returning(_left.c.id, _left.c.codes)
    add = Precompiled(insert, columns=["id", "size", "label", "codes"])
    by_ids = select(_left).where(_left.c.id == any_(bindparam("ids", type_=ARRAY(Uuid))))
    first = select(_left.c.label).order_by(_left.c.size.desc()).limit(1)
    counted = text("SELECT count(*) AS n FROM round_trip_left WHERE size > :floor")
    with engine.begin() as conn:
        for n, id_ in enumerate(ids):
            row = {"id": id_, "size": n, "label": f"100% {n}", "codes": [str(n)]}
            assert add.execute(conn, row).one() == (id_, [str(n)])
        for statement, params in (
            (by_ids.order_by(_left.c.size), {"ids": ids[:2]}),
            (first, {}),
            (counted, {"floor": 0}),
        ):
            expected = conn.execute(statement, params).all()
            got = Precompiled(statement).execute(conn, params).all()
            assert got == expected and got
            assert [r._fields for r in got] == [r._fields for r in expected]
