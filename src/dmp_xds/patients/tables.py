"""SQLAlchemy Core views of the DMP record tables (migration 0005 creates them)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData()

dmp_record = Table(
    "dmp_record",
    metadata,
    Column("patient_key", BigInteger, primary_key=True),
    Column("status", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", Text),
    Column("consent_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("closing_reason", Text),
    Column("closed_by", Text),
    Column("reactivated_at", DateTime(timezone=True)),
    Column("other_ids", JSONB, nullable=False),
    Column("name_prefix", Text),
    Column("given_name", Text),
    Column("family_name", Text),
    Column("birth_name", Text),
    Column("gender", Text),
    Column("birth_date", Text),
    Column("deceased", Boolean),
    Column("telecoms", JSONB, nullable=False),
    Column("addresses", JSONB, nullable=False),
    Column("relationships", JSONB, nullable=False),
    Column("birth_place", JSONB),
    Column("opposition_bris_de_glace", Boolean, nullable=False),
    Column("opposition_acces_urgence", Boolean, nullable=False),
    Column("internet_account", Boolean, nullable=False),
    Column("ens_attached", Boolean, nullable=False),
)

dmp_authorisation = Table(
    "dmp_authorisation",
    metadata,
    Column("patient_key", BigInteger, primary_key=True),
    Column("actor_type", Text, primary_key=True),
    Column("actor_id", Text, primary_key=True),
    Column("id_type", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("medecin_traitant", Boolean, nullable=False),
    Column("first_name", Text),
    Column("last_name", Text),
    Column("specialities", ARRAY(Text), nullable=False),
    Column("speciality_labels", ARRAY(Text), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("last_action_at", DateTime(timezone=True), nullable=False),
    Column("last_action_by", Text),
)
