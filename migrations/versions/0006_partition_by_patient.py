"""Hash-partition the patient-keyed tables by ``patient_key`` (issue 7, scale-out).

What: ``document_entry``, ``submission_set``, ``folder`` and ``association`` (the registry
objects, all the rows a patient accumulates) become ``PARTITION BY HASH (patient_key)`` with
``PARTITIONS`` partitions each (``<table>_p00`` ... ``<table>_p15``). Every query that names
patient_key as a constant (Find*, GetAll, and the Get* queries once a locator gave the patient)
is pruned by the planner to one partition of each table: the psycopg2 driver inlines bound values
client-side, so the planner does see constants. tests/service/test_partitioning.py checks the
plans of the stored queries.

Why, on one node: not query speed (research notes: one B-tree probe either way, and planning
several partitions costs a little), but maintenance and the scale-out path. Each partition is
vacuumed, analysed, reindexed or repacked on its own, a sixteenth of the table at a time; and the
layout is the split by patient that a Citus cluster makes (README "Scale-out").

Keys: a unique index of a partitioned table must contain the partition key. Every primary key of
these tables already leads with ``patient_key`` (0001 was written for this) and they have no
other unique index, so each key and index is recreated unchanged under its own name; there are no
CHECK constraints, foreign keys or triggers on them. ``document_entry_content`` (content_sha256)
does not lead with patient_key and stays as it was: it serves the store's gc and verify, which
look a content key up across patients, now one small index probe per partition.

Not partitioned:

- ``patient``: it *is* the patient_id -> patient_key map, with two unique keys; a partition key
  cannot be in both.
- ``object_locator`` (entryUUID) and ``unique_id_locator`` (kind, uniqueId): looked up by their
  own key only, one probe of a unique B-tree whose depth hardly grows with size; rows are narrow
  and insert-mostly, so vacuum has little to do. Hash-partitioning them by their own key would be
  allowed (their primary keys contain it) but buys nothing on one node, and the joins that
  reach them without a constant (GetSubmissionSets, ITI-43's document lookup) would plan every
  partition. In a Citus cluster they are distributed by their own key (migrations/citus/).
- ``dmp_record`` and ``dmp_authorisation``: patient-keyed, but one row (a few for
  authorisations) per patient, rarely updated, so partitioning buys little maintenance; and the
  access-facts statement that every XDS call runs reaches them by joining from ``patient`` on
  patient_id, with no patient_key constant, so it would plan every partition of both: measured
  on 10 000 records, its planning time went from 0.09 ms to 0.74 ms with 16 partitions each.
  Once that statement names patient_key as a constant (which a Citus cluster needs anyway, to
  route it to one shard), a later migration can partition them the same way (``_rebuild``
  below, plus their foreign keys).
- ``audit_event`` (by time, for retention, if ever), ``vihf_replay``: not patient-keyed.

Partition count: ``PARTITIONS`` = 16. More partitions cost on every statement that cannot prune
at plan time (joins that reach patient_key through another table, cross-patient lookups): each
partition is planned and locked. 16 keeps that small while splitting a 100 M-document registry
into ~6 M-row partitions. PostgreSQL cannot change the modulus of a hash-partitioned table in
place: going to 32 means rewriting rows, either the whole table (this migration's copy again) or
one partition at a time (moduli that divide one another may coexist: detach ``_p03`` of modulus
16 and re-insert its rows into new partitions for remainders 3 and 19 of modulus 32). A power
of two keeps that second path open.

Data: the rows are copied (INSERT ... SELECT into the new partitioned table, old table dropped,
new one renamed; keys and indexes built after the copy, which is faster than maintaining them
row by row) in the migration's transaction, so a failure leaves the schema at 0005. The four
tables are locked (ACCESS EXCLUSIVE) before the copy: a row committed by a running server after
the copy began would otherwise be dropped with the old table. So the registry neither reads nor
writes for the length of the copy, which also needs the space of a second copy: about a minute
per million documents (11 s for 200 000 here), so a large registry is migrated in a maintenance
window. ``ANALYZE`` closes the migration because autovacuum never analyses a partitioned parent
(only its partitions); re-run ``ANALYZE <table>`` after large loads (``load-synthetic`` does).
Privileges granted by hand on the old tables are not carried over (the application owns them).

Downgrade: the same copy back into plain tables with the 0005 definitions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PARTITIONS = 16
"""Hash partitions per table; fixed at creation (see the module docstring before changing)."""

PRIMARY_KEYS: dict[str, str] = {
    "document_entry": "patient_key, entry_uuid",
    "submission_set": "patient_key, entry_uuid",
    "folder": "patient_key, entry_uuid",
    "association": "patient_key, entry_uuid",
}

# Every other index of these tables at 0005, under its own name (0001).
INDEXES = (
    "CREATE INDEX document_entry_find ON document_entry (patient_key, status, creation_time)",
    "CREATE INDEX document_entry_unique_id ON document_entry (patient_key, unique_id)",
    "CREATE INDEX document_entry_logical_id ON document_entry (patient_key, logical_id)",
    "CREATE INDEX document_entry_content ON document_entry (content_sha256)",
    "CREATE INDEX submission_set_find ON submission_set (patient_key, status, submission_time)",
    "CREATE INDEX folder_find ON folder (patient_key, status, last_update_time)",
    "CREATE INDEX association_source ON association (patient_key, source_uuid)",
    "CREATE INDEX association_target ON association (patient_key, target_uuid)",
)


def _rebuild(*, partitioned: bool) -> str:
    """The SQL that rebuilds every table of ``PRIMARY_KEYS`` as a hash-partitioned table
    (upgrade) or a plain one (downgrade), rows, keys and indexes included.

    ``LIKE ... INCLUDING`` copies the columns in order, with their NOT NULLs, defaults, CHECK
    constraints, storage and compression settings, so ``SELECT *`` lines up; keys and indexes
    are added after the copy, under their 0005 names."""
    tables = list(PRIMARY_KEYS)
    # Before the copy reads anything: no write may land in an old table once it is copied.
    sql = [f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE"]
    for table in tables:
        sql.append(
            f"CREATE TABLE {table}__rebuilt (LIKE {table} INCLUDING DEFAULTS"
            " INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING COMMENTS)"
            + (" PARTITION BY HASH (patient_key)" if partitioned else "")
        )
        if partitioned:
            sql += [
                f"CREATE TABLE {table}_p{r:02d} PARTITION OF {table}__rebuilt"
                f" FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {r})"
                for r in range(PARTITIONS)
            ]
        sql.append(f"INSERT INTO {table}__rebuilt SELECT * FROM {table}")  # noqa: S608 - fixed names
    # Dropping a partitioned table drops its partitions too.
    sql += [f"DROP TABLE {table}" for table in tables]
    for table, key in PRIMARY_KEYS.items():
        sql += [
            f"ALTER TABLE {table}__rebuilt RENAME TO {table}",
            f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({key})",
        ]
    sql += [*INDEXES, "ANALYZE " + ", ".join(tables)]
    return ";\n".join(sql) + ";"


def upgrade() -> None:
    op.execute(_rebuild(partitioned=True))


def downgrade() -> None:
    op.execute(_rebuild(partitioned=False))
