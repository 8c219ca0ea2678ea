-- Citus layout of the dmp-xds schema (issue 7, README "Scale-out").
--
-- NOT run by `dmp-xds migrate` or by the tests, and NOT TESTED: Citus is not packaged by
-- Debian (bookworm has no citus package; the .debs are only on packagecloud), so no cluster
-- was available to run it. Treat it as the reviewed plan for a first cluster, to be checked
-- there (every statement below is a documented Citus function).
--
-- When: on the coordinator, after `dmp-xds migrate` brought the schema to head, with the
-- workers added (citus_add_node). create_distributed_table copies existing rows to the shards.
--
-- Shape: everything a patient owns is hash-distributed by patient_key and co-located, so a
-- statement that names one patient_key is routed whole to one shard (a "router" query, joins
-- included); the locators are distributed by their own key (a Get* by entryUUID or uniqueId
-- is one router query to the locator's shard, then one to the patient's shard); `patient` is a
-- reference table (a copy on every node), so that every node can join it.

CREATE EXTENSION IF NOT EXISTS citus;

-- One shard count for the co-location group; shards are moved, not split, when nodes are
-- added, so leave room: 32 shards serve up to 32 workers. Fixed once the tables exist.
SET citus.shard_count = 32;

-- patient: patient_id -> patient_key, written once per patient, read on every call. Both its
-- unique keys (patient_key, patient_id) can stay enforced only if it is not distributed by one
-- of them alone, and dmp_record's foreign key to it needs it co-located or replicated: a
-- reference table keeps both. Cost: every new patient is a write on every node (two-phase
-- commit), and every node stores the whole table (one narrow row per patient). If that
-- becomes too much, distribute it by patient_id instead (the patient_id -> key locator),
-- drop dmp_record_patient_key_fkey, and look patient_key up before joining (README "Scale-out").
SELECT create_reference_table('patient');

-- The registry objects and the DMP record: distributed by patient_key, co-located with
-- document_entry. Their primary keys already contain patient_key, as Citus requires of
-- every unique constraint. 0006 made the first four hash-partitioned: Citus distributes a
-- partitioned table too (each shard keeps the 16 partitions, which a router query prunes on
-- the worker); to distribute plain tables instead, see README "Scale-out".
SELECT create_distributed_table('document_entry', 'patient_key');
SELECT create_distributed_table('submission_set', 'patient_key', colocate_with => 'document_entry');
SELECT create_distributed_table('folder', 'patient_key', colocate_with => 'document_entry');
SELECT create_distributed_table('association', 'patient_key', colocate_with => 'document_entry');
-- dmp_record before dmp_authorisation: the latter's foreign key references the former, and a
-- foreign key between distributed tables must join co-located tables on the distribution column.
SELECT create_distributed_table('dmp_record', 'patient_key', colocate_with => 'document_entry');
SELECT create_distributed_table('dmp_authorisation', 'patient_key', colocate_with => 'document_entry');

-- The locators: distributed by their own key (their primary keys contain it, so global
-- uniqueness of entryUUID and uniqueId stays enforced by PostgreSQL). Not reference tables:
-- they take three rows per document, the most written rows of the schema, and a reference
-- table writes every row on every node. A submission then writes the patient's shard and
-- the locators' shards in one distributed (two-phase) transaction.
SELECT create_distributed_table('object_locator', 'entry_uuid', colocate_with => 'none');
SELECT create_distributed_table('unique_id_locator', 'unique_id', colocate_with => 'none');

-- vihf_replay: one insert per request, looked up by assertion_id only; distributed by it so
-- that any node can claim an assertion id. The purge by expires_at becomes a multi-shard DELETE.
SELECT create_distributed_table('vihf_replay', 'assertion_id', colocate_with => 'none');

-- audit_event: one row per call, read by patient, by actor or by time (all cross-shard
-- whatever the key, since rows carry patient_id text and may have none). Distributed by its
-- primary key to spread the writes. CHECK ON THE CLUSTER: Citus does not carry the
-- append-only triggers (0003) to the shards by default; re-create them on every shard
-- (run_command_on_shards) or keep audit_event a local table on the coordinator.
SELECT create_distributed_table('audit_event', 'event_id', colocate_with => 'none');

-- Reference tables besides patient: none today (the schema has no code or value-set tables;
-- they would be reference tables: small, read-mostly, joined from any shard).
-- alembic_version stays a local table of the coordinator.
