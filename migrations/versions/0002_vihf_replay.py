"""VIHF replay cache: assertion ids already used, kept until the assertion would expire anyway.

Shared by every worker and every server of a deployment (an in-process cache would let an
assertion be replayed against another worker). An id is refused while its row has not
expired; rows past ``expires_at`` are purged opportunistically by the servers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE vihf_replay (
            assertion_id text PRIMARY KEY,
            expires_at timestamptz NOT NULL,
            first_seen timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX vihf_replay_expires ON vihf_replay (expires_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE vihf_replay;")
