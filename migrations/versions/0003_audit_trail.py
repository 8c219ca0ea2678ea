"""Audit trail ("traçabilité"): one row per call, allowed or refused; append-only.

The table refuses UPDATE, DELETE and TRUNCATE through statement triggers, so neither the
application nor an operator's mistaken statement can rewrite history; rows only come in.
Rows name the patient (canonical CX) and the objects by identifier, never their content.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE audit_event (
            event_id bigserial PRIMARY KEY,
            occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            request_id uuid NOT NULL,
            transaction text NOT NULL,
            action text,
            outcome text NOT NULL,
            error_codes text[] NOT NULL DEFAULT '{}',
            patient_id text,
            actor_id text,
            actor_name text,
            profession text,
            specialty text,
            structure_id text,
            authentication_mode text,
            access_mode text,
            software text,
            homologation text,
            objects text[] NOT NULL DEFAULT '{}',
            remote_addr text,
            detail text
        );
        CREATE INDEX audit_event_patient ON audit_event (patient_id, occurred_at);
        CREATE INDEX audit_event_actor ON audit_event (actor_id, occurred_at);

        CREATE FUNCTION audit_event_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_event is append-only (% refused)', TG_OP;
        END
        $$;
        CREATE TRIGGER audit_event_append_only
            BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_event
            FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE audit_event;
        DROP FUNCTION audit_event_append_only();
        """
    )
