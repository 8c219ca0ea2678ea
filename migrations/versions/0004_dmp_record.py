"""The DMP record ("dossier") of each patient and the professionals' authorisations on it.

Why separate tables rather than columns on ``patient``: the XDS side only needs to know that a
patient id exists; everything the DMP's own LPS services carry (status, consent, identity
traits for TD1.3a and PDQ, oppositions, authorisations) lives beside it, keyed by the same
``patient_key`` so that these tables can be partitioned and distributed with the registry's.

``dmp_record``: one row per record, created with the patient's consent (TD1.1); closing keeps
the row (status ``closed`` with reason and date) so that reactivation (TD1.2) and the
existence test (TD0.2: "terminated") can tell a closed record from a missing one. Telecoms,
addresses, legal representatives and birth place are kept as the messages carry them (JSON),
the traits a patient search filters on as indexed columns.

``dmp_authorisation``: one row per professional or structure the patient authorised (TD0.3) or
blocked; at most one médecin traitant per record (partial unique index).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE dmp_record (
            patient_key bigint PRIMARY KEY REFERENCES patient (patient_key),
            status text NOT NULL CHECK (status IN ('open', 'closed')),
            created_at timestamptz NOT NULL,
            created_by text,
            consent_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            closed_at timestamptz,
            closing_reason text,
            closed_by text,
            reactivated_at timestamptz,
            other_ids jsonb NOT NULL DEFAULT '[]',
            name_prefix text,
            given_name text,
            family_name text,
            birth_name text,
            gender text,
            birth_date text,
            deceased boolean,
            telecoms jsonb NOT NULL DEFAULT '[]',
            addresses jsonb NOT NULL DEFAULT '[]',
            relationships jsonb NOT NULL DEFAULT '[]',
            birth_place jsonb,
            opposition_bris_de_glace boolean NOT NULL DEFAULT false,
            opposition_acces_urgence boolean NOT NULL DEFAULT false,
            internet_account boolean NOT NULL DEFAULT false,
            ens_attached boolean NOT NULL DEFAULT false,
            CHECK ((status = 'closed') = (closed_at IS NOT NULL))
        );
        CREATE INDEX dmp_record_family ON dmp_record (lower(family_name), birth_date);
        CREATE INDEX dmp_record_birth_name ON dmp_record (lower(birth_name), birth_date);
        CREATE INDEX dmp_record_birth_date ON dmp_record (birth_date);

        CREATE TABLE dmp_authorisation (
            patient_key bigint NOT NULL REFERENCES dmp_record (patient_key),
            actor_type text NOT NULL CHECK (actor_type IN ('professional', 'structure')),
            actor_id text NOT NULL,
            id_type text NOT NULL,
            status text NOT NULL CHECK (status IN ('authorised', 'blocked')),
            medecin_traitant boolean NOT NULL DEFAULT false,
            first_name text,
            last_name text,
            specialities text[] NOT NULL DEFAULT '{}',
            speciality_labels text[] NOT NULL DEFAULT '{}',
            started_at timestamptz NOT NULL,
            last_action_at timestamptz NOT NULL,
            last_action_by text,
            PRIMARY KEY (patient_key, actor_type, actor_id),
            CHECK (NOT (medecin_traitant AND status = 'blocked'))
        );
        CREATE INDEX dmp_authorisation_actor
            ON dmp_authorisation (actor_type, actor_id, last_action_at);
        CREATE UNIQUE INDEX dmp_authorisation_one_mt
            ON dmp_authorisation (patient_key) WHERE medecin_traitant;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE dmp_authorisation; DROP TABLE dmp_record;")
