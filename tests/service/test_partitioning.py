"""The registry objects are hash-partitioned by patient (migration 0006), and the stored queries
touch one partition of each: the statements that ``registry/queries.py`` really builds are
captured from SQLAlchemy's cursor events while ``run_stored_query`` runs, then EXPLAINed with the
same driver (psycopg2 inlines the bound values client-side, so the planner sees constants and can
prune when it plans, as it does for the server).

Two checks per statement, for each partitioned table it reads:

- at plan time (EXPLAIN): exactly one partition is planned, so one is opened and locked;
- at run time (EXPLAIN ANALYZE): at most one partition is executed (a statement whose patient
  key comes from a subquery can only be pruned while it runs).
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from dmp_xds.client.xds import adhoc_query_request
from dmp_xds.metadata import vocabulary as v
from dmp_xds.registry import tables as t
from dmp_xds.registry.queries import run_stored_query
from dmp_xds.registry.query_params import read_query_request
from dmp_xds.registry.synthetic import LoadReport, load_synthetic
from dmp_xds.resources import resource_dir

PARTITIONED = ("document_entry", "submission_set", "folder", "association")
UNPARTITIONED = (
    "patient",
    "object_locator",
    "unique_id_locator",
    "dmp_record",
    "dmp_authorisation",
    "audit_event",
    "vihf_replay",
)


def migration_0006() -> ModuleType:
    """The migration module itself (its ``PARTITIONS`` is the one number to agree with)."""
    path = resource_dir("migrations") / "versions" / "0006_partition_by_patient.py"
    spec = importlib.util.spec_from_file_location("migration_0006", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Targets:
    """Identifiers of one loaded patient for the queries to ask about."""

    patient_id: str
    document_unique_id: str
    document_uuid: str
    submission_set_uuid: str


@pytest.fixture(scope="module")
def targets(engine: Engine) -> Targets:
    report: LoadReport = load_synthetic(
        engine, 160, 8, heavy_patients=2, heavy_documents=50, seed=17, chunk_documents=1000
    )
    patient_id = report.heavy_patient_ids[0]
    de, ss, p = t.document_entry, t.submission_set, t.patient
    with engine.connect() as conn:
        key = conn.execute(select(p.c.patient_key).where(p.c.patient_id == patient_id)).scalar_one()
        doc = conn.execute(
            select(de.c.unique_id, de.c.entry_uuid).where(de.c.patient_key == key).limit(1)
        ).one()
        submission = conn.execute(
            select(ss.c.entry_uuid).where(ss.c.patient_key == key).limit(1)
        ).scalar_one()
    return Targets(
        patient_id, doc.unique_id, f"urn:uuid:{doc.entry_uuid}", f"urn:uuid:{submission}"
    )


@pytest.fixture(scope="module")
def parents(engine: Engine) -> dict[str, str]:
    """Partition name -> partitioned table name."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT c.relname, p.relname FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent"
            " WHERE p.relkind = 'p'"
        ).all()
    return dict(rows)  # type: ignore[arg-type]


def test_patient_tables_are_hash_partitioned_by_patient_key(
    engine: Engine, parents: dict[str, str]
) -> None:
    partitions = migration_0006().PARTITIONS
    with engine.connect() as conn:
        keys = dict(
            conn.exec_driver_sql(
                "SELECT c.relname, pg_get_partkeydef(c.oid) FROM pg_class c"
                " WHERE c.relkind = 'p' AND c.relnamespace = 'public'::regnamespace"
            ).all()
        )
        plain = conn.exec_driver_sql(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname = ANY(%(names)s)",
            {"names": list(UNPARTITIONED)},
        ).scalars()
        assert sorted(plain) == sorted(UNPARTITIONED)
    assert keys == dict.fromkeys(PARTITIONED, "HASH (patient_key)")
    assert Counter(parents.values()) == dict.fromkeys(PARTITIONED, partitions)


@dataclass(frozen=True)
class Case:
    name: str
    query_id: str
    params: dict[str, Any]
    # Partitioned tables the query must read (so that the checks are not vacuous).
    reads: tuple[str, ...]


def cases(x: Targets) -> dict[str, Case]:
    de, ss, fol = "$XDSDocumentEntry", "$XDSSubmissionSet", "$XDSFolder"
    approved = [v.APPROVED]
    return {
        c.name: c
        for c in (
            Case(
                "FindDocuments",
                v.FIND_DOCUMENTS,
                {de + "PatientId": x.patient_id, de + "Status": approved},
                ("document_entry",),
            ),
            Case(
                "FindDocuments filtered",
                v.FIND_DOCUMENTS,
                {
                    de + "PatientId": x.patient_id,
                    de + "Status": approved,
                    de + "CreationTimeFrom": "2012",
                    de + "AuthorPerson": ["%AUTEUR%"],
                },
                ("document_entry",),
            ),
            Case(
                "FindSubmissionSets",
                v.FIND_SUBMISSION_SETS,
                {ss + "PatientId": x.patient_id, ss + "Status": approved},
                ("submission_set",),
            ),
            Case(
                "FindFolders",
                v.FIND_FOLDERS,
                {fol + "PatientId": x.patient_id, fol + "Status": approved},
                ("folder",),
            ),
            Case(
                "GetAll",
                v.GET_ALL,
                {
                    "$patientId": x.patient_id,
                    de + "Status": approved,
                    ss + "Status": approved,
                    fol + "Status": approved,
                },
                PARTITIONED,
            ),
            Case(
                "GetDocuments by entryUUID",
                v.GET_DOCUMENTS,
                {de + "EntryUUID": [x.document_uuid]},
                ("document_entry",),
            ),
            Case(
                "GetDocuments by uniqueId",
                v.GET_DOCUMENTS,
                {de + "UniqueId": [x.document_unique_id]},
                ("document_entry",),
            ),
            Case(
                "GetDocumentsAndAssociations",
                v.GET_DOCUMENTS_AND_ASSOCIATIONS,
                {de + "EntryUUID": [x.document_uuid]},
                ("document_entry", "association"),
            ),
            Case(
                "GetAssociations",
                v.GET_ASSOCIATIONS,
                {"$uuid": [x.document_uuid]},
                ("association",),
            ),
            Case(
                "GetSubmissionSets",
                v.GET_SUBMISSION_SETS,
                {"$uuid": [x.document_uuid]},
                ("association", "submission_set"),
            ),
            Case(
                "GetSubmissionSetAndContents",
                v.GET_SUBMISSION_SET_AND_CONTENTS,
                {ss + "EntryUUID": x.submission_set_uuid},
                PARTITIONED,
            ),
            Case(
                "GetRelatedDocuments",
                v.GET_RELATED_DOCUMENTS,
                {de + "EntryUUID": x.document_uuid, "$AssociationTypes": [v.HAS_MEMBER]},
                ("document_entry", "association"),
            ),
        )
    }


CASE_NAMES = list(cases(Targets("", "", "", "")))


def statements(engine: Engine, case: Case) -> Iterator[tuple[str, Any]]:
    """The SQL and parameters of every statement the stored query sends to PostgreSQL."""
    req, errors = read_query_request(adhoc_query_request(case.query_id, case.params))
    assert req is not None and not errors, errors
    captured: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with engine.connect() as conn:
            run_stored_query(conn, req, 1000)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert captured, case.name
    yield from captured


def scanned(
    engine: Engine, case: Case, parents: dict[str, str], *, analyze: bool
) -> list[dict[str, dict[str, int]]]:
    """Per statement: partitioned table -> {partition: actual loops (plan only: 1)}."""
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    result = []
    raw = engine.raw_connection()
    try:
        cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
        for statement, parameters in statements(engine, case):
            cursor.execute(f"EXPLAIN ({options}) {statement}", parameters)
            plan = cursor.fetchone()[0]
            if isinstance(plan, str):
                plan = json.loads(plan)
            tables: dict[str, dict[str, int]] = {}
            stack = [plan[0]["Plan"]]
            while stack:
                node = stack.pop()
                stack += node.get("Plans", [])
                relation = node.get("Relation Name")
                assert relation not in PARTITIONED, "a partitioned parent has no rows to scan"
                if relation in parents:
                    loops = node.get("Actual Loops", 1)
                    tables.setdefault(parents[relation], {})[relation] = loops
            result.append(tables)
        raw.driver_connection.rollback()  # type: ignore[union-attr]
    finally:
        raw.close()
    return result


def _read_tables(per_statement: list[dict[str, dict[str, int]]]) -> set[str]:
    return {table for tables in per_statement for table in tables}


@pytest.mark.parametrize("name", CASE_NAMES)
def test_each_statement_executes_one_partition(
    name: str, engine: Engine, targets: Targets, parents: dict[str, str]
) -> None:
    case = cases(targets)[name]
    per_statement = scanned(engine, case, parents, analyze=True)
    assert _read_tables(per_statement) >= set(case.reads)
    for tables in per_statement:
        for table, partitions in tables.items():
            executed = [p for p, loops in partitions.items() if loops]
            assert len(executed) <= 1, (name, table, executed)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_each_statement_plans_one_partition(
    name: str, engine: Engine, targets: Targets, parents: dict[str, str]
) -> None:
    case = cases(targets)[name]
    per_statement = scanned(engine, case, parents, analyze=False)
    assert _read_tables(per_statement) >= set(case.reads)
    for tables in per_statement:
        for table, partitions in tables.items():
            assert len(partitions) == 1, (name, table, sorted(partitions))


def test_find_and_get_documents_read_the_patients_partition(
    engine: Engine, targets: Targets, parents: dict[str, str]
) -> None:
    """The partition FindDocuments and GetDocuments read is the one that holds the patient."""
    with engine.connect() as conn:
        holder = conn.exec_driver_sql(
            "SELECT d.tableoid::regclass::text FROM document_entry d"
            " JOIN patient p USING (patient_key) WHERE p.patient_id = %(pid)s LIMIT 1",
            {"pid": targets.patient_id},
        ).scalar_one()
    for name in ("FindDocuments", "GetDocuments by entryUUID", "GetDocuments by uniqueId"):
        per_statement = scanned(engine, cases(targets)[name], parents, analyze=True)
        executed = {
            p
            for tables in per_statement
            for p, loops in tables.get("document_entry", {}).items()
            if loops
        }
        assert executed == {holder}, name
