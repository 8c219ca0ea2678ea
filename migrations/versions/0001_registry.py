"""Registry schema: patients, registry objects, locators.

Every patient-scoped table leads its primary key and indexes with ``patient_key`` so that each
patient-scoped query touches one patient's rows and the tables can later be hash-partitioned or
distributed (Citus) by that column. Global uniqueness (entryUUID, uniqueId) lives in small
locator tables, since a unique constraint on a distributed table must include the distribution
column.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE patient (
            patient_key bigserial PRIMARY KEY,
            patient_id text NOT NULL UNIQUE,
            created_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE document_entry (
            patient_key bigint NOT NULL,
            entry_uuid uuid NOT NULL,
            logical_id uuid NOT NULL,
            version integer NOT NULL DEFAULT 1,
            unique_id text NOT NULL,
            status text NOT NULL,
            object_type text NOT NULL,
            mime_type text NOT NULL,
            class_code text,
            type_code text,
            format_code text,
            facility_code text,
            practice_code text,
            confidentiality_codes text[] NOT NULL DEFAULT '{}',
            event_codes text[] NOT NULL DEFAULT '{}',
            author_persons text[] NOT NULL DEFAULT '{}',
            creation_time text,
            service_start_time text,
            service_stop_time text,
            hash_sha1 text,
            size bigint,
            repository_unique_id text,
            content_sha256 text,
            reference_ids text[] NOT NULL DEFAULT '{}',
            availability text,
            registered_at timestamptz NOT NULL DEFAULT now(),
            ebrim text NOT NULL,
            PRIMARY KEY (patient_key, entry_uuid)
        );
        CREATE INDEX document_entry_find
            ON document_entry (patient_key, status, creation_time);
        CREATE INDEX document_entry_unique_id ON document_entry (patient_key, unique_id);
        CREATE INDEX document_entry_logical_id ON document_entry (patient_key, logical_id);
        CREATE INDEX document_entry_content ON document_entry (content_sha256);

        CREATE TABLE submission_set (
            patient_key bigint NOT NULL,
            entry_uuid uuid NOT NULL,
            unique_id text NOT NULL,
            source_id text,
            status text NOT NULL,
            submission_time text,
            content_type_code text,
            author_persons text[] NOT NULL DEFAULT '{}',
            registered_at timestamptz NOT NULL DEFAULT now(),
            ebrim text NOT NULL,
            PRIMARY KEY (patient_key, entry_uuid)
        );
        CREATE INDEX submission_set_find
            ON submission_set (patient_key, status, submission_time);

        CREATE TABLE folder (
            patient_key bigint NOT NULL,
            entry_uuid uuid NOT NULL,
            logical_id uuid NOT NULL,
            version integer NOT NULL DEFAULT 1,
            unique_id text NOT NULL,
            status text NOT NULL,
            codes text[] NOT NULL DEFAULT '{}',
            last_update_time text,
            registered_at timestamptz NOT NULL DEFAULT now(),
            ebrim text NOT NULL,
            PRIMARY KEY (patient_key, entry_uuid)
        );
        CREATE INDEX folder_find ON folder (patient_key, status, last_update_time);

        CREATE TABLE association (
            patient_key bigint NOT NULL,
            entry_uuid uuid NOT NULL,
            association_type text NOT NULL,
            source_uuid uuid NOT NULL,
            target_uuid uuid NOT NULL,
            status text NOT NULL,
            registered_at timestamptz NOT NULL DEFAULT now(),
            ebrim text NOT NULL,
            PRIMARY KEY (patient_key, entry_uuid)
        );
        CREATE INDEX association_source ON association (patient_key, source_uuid);
        CREATE INDEX association_target ON association (patient_key, target_uuid);

        -- entryUUID -> patient and kind, for Get* queries and association targets.
        CREATE TABLE object_locator (
            entry_uuid uuid PRIMARY KEY,
            patient_key bigint NOT NULL,
            kind text NOT NULL
        );

        -- uniqueId -> patient; one row per (kind, uniqueId): versions of a document share it.
        CREATE TABLE unique_id_locator (
            kind text NOT NULL,
            unique_id text NOT NULL,
            patient_key bigint NOT NULL,
            PRIMARY KEY (kind, unique_id)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE unique_id_locator, object_locator, association, folder, submission_set,
            document_entry, patient;
        """
    )
