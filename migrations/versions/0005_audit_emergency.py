"""Audit trail: emergency accesses flagged, with their motive.

Break-glass (``bris_de_glace``) and régulation (``centre_15``) read a record without the
patient's authorisation, so the trail must make them easy to find and impossible to miss:

- ``emergency`` is a *generated* column, computed by PostgreSQL from ``access_mode``. No code
  path can record an emergency access with the flag down, and the rows written before this
  migration get the right value too: the table is append-only (0003's triggers refuse
  UPDATE), so a back-fill by UPDATE is not possible, and a generated column needs none. Adding
  a stored generated column rewrites the table once (an ACCESS EXCLUSIVE lock for the length of
  a copy of ``audit_event``); plan the migration of a large trail for a quiet hour.
- ``audit_event_emergency`` is a partial index of the flagged rows only (a small fraction), by
  time, for "every emergency access since ..." reviews; the patient's own trail already has
  ``audit_event_patient``.
- ``access_motive``: the free-text reason the software gave, if any (optional in the VIHF).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE audit_event
            ADD COLUMN access_motive text,
            ADD COLUMN emergency boolean NOT NULL GENERATED ALWAYS AS (
                coalesce(access_mode IN ('bris_de_glace', 'centre_15'), false)
            ) STORED;
        CREATE INDEX audit_event_emergency ON audit_event (occurred_at) WHERE emergency;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX audit_event_emergency;
        ALTER TABLE audit_event DROP COLUMN emergency, DROP COLUMN access_motive;
        """
    )
