"""Migration 0006 on a registry that already holds data: upgrade from 0005 keeps every row, key
and index, the registry then answers and loads as before, and downgrade gives back the 0005
schema exactly, rows included.

It runs in a database of its own, created and dropped on the session's server: the session's
database is shared by every test and is already at the head revision.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from dmp_xds.client.xds import adhoc_query_request
from dmp_xds.metadata import vocabulary as v
from dmp_xds.registry.database import make_engine, normalise_url
from dmp_xds.registry.queries import run_stored_query
from dmp_xds.registry.query_params import read_query_request
from dmp_xds.registry.synthetic import load_synthetic
from dmp_xds.resources import resource_dir

# The tables 0006 rebuilds, with their primary key (the order rows are compared in).
REBUILT = {
    "document_entry": "patient_key, entry_uuid",
    "submission_set": "patient_key, entry_uuid",
    "folder": "patient_key, entry_uuid",
    "association": "patient_key, entry_uuid",
}
# And tables it must leave alone.
KEPT = {
    "patient": "patient_key",
    "object_locator": "entry_uuid",
    "unique_id_locator": "kind, unique_id",
    "dmp_record": "patient_key",
    "dmp_authorisation": "patient_key, actor_type, actor_id",
}


@pytest.fixture
def scratch_url(database_url: str) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped afterwards."""
    name = f"dmp_xds_migration_{uuid.uuid4().hex[:12]}"
    server = create_engine(normalise_url(database_url), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = make_url(normalise_url(database_url)).set(database=name)
        yield url.render_as_string(hide_password=False)
        with server.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        server.dispose()


def alembic(url: str, action: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(resource_dir("migrations")))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    getattr(command, action)(cfg, revision)


def rows(engine: Engine) -> dict[str, tuple[int, str]]:
    """Count and digest of every row of each table, in key order."""
    out = {}
    with engine.connect() as conn:
        for table, key in {**REBUILT, **KEPT}.items():
            out[table] = tuple(
                conn.execute(
                    text(
                        f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY {key}),"  # noqa: S608 - fixed names
                        f" '')) FROM {table} t"
                    )
                ).one()
            )
    return out


def schema(engine: Engine) -> dict[str, object]:
    """What 0005 defined and 0006 must keep: columns, indexes, constraints (partition-level
    clones left out, and ``ON ONLY``, which only says an index is a partitioned one)."""
    with engine.connect() as conn:
        columns = conn.execute(
            text(
                "SELECT c.relname::text, a.attnum, a.attname::text,"
                " format_type(a.atttypid, a.atttypmod), a.attnotnull,"
                " pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a"
                " JOIN pg_class c ON c.oid = a.attrelid"
                " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
                " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')"
                " AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped"
                " ORDER BY 1, 2"
            )
        ).all()
        indexes = conn.execute(
            text(
                "SELECT i.indexrelid::regclass::text, replace(pg_get_indexdef(i.indexrelid),"
                " ' ON ONLY ', ' ON ') FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
                " WHERE c.relnamespace = 'public'::regnamespace AND c.relispartition = false"
                " ORDER BY 1"
            )
        ).all()
        constraints = conn.execute(
            text(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
                " FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
                " AND conparentid = 0 AND conrelid <> 0 AND NOT EXISTS (SELECT 1 FROM pg_class c"
                " WHERE c.oid = conrelid AND c.relispartition) ORDER BY 1, 2"
            )
        ).all()
        triggers = conn.execute(
            text(
                "SELECT tgrelid::regclass::text, tgname FROM pg_trigger"
                " WHERE NOT tgisinternal ORDER BY 1, 2"
            )
        ).all()
    return {
        "columns": [tuple(r) for r in columns],
        "indexes": [tuple(r) for r in indexes],
        "constraints": [tuple(r) for r in constraints],
        "triggers": [tuple(r) for r in triggers],
    }


def relkinds(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                text("SELECT relname, relkind::text FROM pg_class WHERE relname = ANY(:names)"),
                {"names": [*REBUILT, *KEPT]},
            ).all()
        )


def find_documents(engine: Engine, patient_id: str) -> int:
    req, errors = read_query_request(
        adhoc_query_request(
            v.FIND_DOCUMENTS,
            {"$XDSDocumentEntryPatientId": patient_id, "$XDSDocumentEntryStatus": [v.APPROVED]},
        )
    )
    assert req is not None and not errors
    with engine.connect() as conn:
        return len(run_stored_query(conn, req, 1000))


def test_upgrade_keeps_the_rows_and_downgrade_restores_0005(scratch_url: str) -> None:
    alembic(scratch_url, "upgrade", "0005")
    engine = make_engine(scratch_url, pool_size=1)
    try:
        loaded = load_synthetic(engine, 240, 10, heavy_patients=2, heavy_documents=50, seed=5)
        with engine.begin() as conn:
            # load-synthetic writes no folder: one, with its HasMember link, in 0005's SQL.
            conn.execute(
                text(
                    "INSERT INTO folder (patient_key, entry_uuid, logical_id, unique_id, status,"
                    " codes, last_update_time, ebrim)"
                    " SELECT patient_key, f, f, '1.2.250.1.999.9.1', :approved, '{a^^b}',"
                    " '20260101000000', '<RegistryPackage/>' FROM patient,"
                    " gen_random_uuid() f ORDER BY patient_key LIMIT 1;"
                    "INSERT INTO association (patient_key, entry_uuid, association_type,"
                    " source_uuid, target_uuid, status, ebrim)"
                    " SELECT f.patient_key, gen_random_uuid(), :member, f.entry_uuid,"
                    " d.entry_uuid, :approved, '<Association/>' FROM folder f"
                    " JOIN document_entry d USING (patient_key) LIMIT 3"
                ),
                {"approved": v.APPROVED, "member": v.HAS_MEMBER},
            )
        before_rows, before_schema = rows(engine), schema(engine)
        assert before_rows["document_entry"][0] == 240 and before_rows["folder"][0] == 1
        assert set(relkinds(engine).values()) == {"r"}
        engine.dispose()

        alembic(scratch_url, "upgrade", "0006")
        kinds = relkinds(engine)
        assert {t: kinds[t] for t in REBUILT} == dict.fromkeys(REBUILT, "p")
        assert {t: kinds[t] for t in KEPT} == dict.fromkeys(KEPT, "r")
        assert rows(engine) == before_rows
        assert schema(engine) == before_schema
        # The registry answers from the moved rows, and COPY still loads through the parents.
        assert find_documents(engine, loaded.heavy_patient_ids[0]) == 50
        more = load_synthetic(engine, 30, 3, heavy_patients=1, heavy_documents=10, seed=6)
        assert find_documents(engine, more.heavy_patient_ids[0]) == 10
        with engine.connect() as conn:
            # Every row sits in the partition its patient_key hashes to (no default partition
            # exists to catch strays, but check the parents' own storage is empty too).
            assert conn.execute(text("SELECT count(*) FROM ONLY document_entry")).scalar() == 0
            assert conn.execute(text("SELECT count(*) FROM document_entry")).scalar() == 270
        upgraded_rows = rows(engine)
        engine.dispose()

        alembic(scratch_url, "downgrade", "0005")
        assert set(relkinds(engine).values()) == {"r"}
        assert rows(engine) == upgraded_rows
        assert schema(engine) == before_schema
        assert find_documents(engine, more.heavy_patient_ids[0]) == 10
    finally:
        engine.dispose()


def test_rows_written_during_the_upgrade_are_kept(scratch_url: str) -> None:
    """A server left running while 0006 runs must lose nothing: a row committed after the copy
    of its table began would go with the old table unless the tables are locked first (without
    the LOCK, about one row in six written during a 200 000-document migration was lost)."""
    alembic(scratch_url, "upgrade", "0005")
    engine = make_engine(scratch_url, pool_size=1)
    writer_engine = create_engine(normalise_url(scratch_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO document_entry (patient_key, entry_uuid, logical_id, unique_id,"
                    " status, object_type, mime_type, ebrim)"
                    " SELECT g % 1000, u, u, u::text, 's', 't', 'm', repeat('x', 300)"
                    " FROM (SELECT g, gen_random_uuid() u FROM generate_series(1, 60000) g) s"
                )
            )
        engine.dispose()
        stop = threading.Event()
        committed: list[int] = []
        failures: list[BaseException] = []

        def write() -> None:
            """One row per transaction, as a submission would, until stopped."""
            try:
                with writer_engine.connect() as conn:
                    while not stop.is_set():
                        u = uuid.uuid4()
                        conn.execute(
                            text(
                                "INSERT INTO document_entry (patient_key, entry_uuid,"
                                " logical_id, unique_id, status, object_type, mime_type, ebrim)"
                                " VALUES (:key, :u, :u, :uid, 's', 't', 'm', '<e/>')"
                            ),
                            {"key": len(committed) % 1000, "u": u, "uid": str(u)},
                        )
                        committed.append(1)
            except BaseException as exc:  # reported by the test, not lost in the thread
                failures.append(exc)

        thread = threading.Thread(target=write)
        thread.start()
        try:
            time.sleep(0.3)
            started = len(committed)
            alembic(scratch_url, "upgrade", "0006")
            time.sleep(0.3)
        finally:
            stop.set()
            thread.join(30)
        assert not failures, failures
        assert started > 0 and len(committed) > started  # the writer ran before and after
        assert relkinds(engine)["document_entry"] == "p"
        with engine.connect() as conn:
            present = conn.execute(text("SELECT count(*) FROM document_entry")).scalar_one()
        assert present == 60000 + len(committed)
    finally:
        engine.dispose()
        writer_engine.dispose()
