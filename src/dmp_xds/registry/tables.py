"""SQLAlchemy Core descriptions of the registry tables (migrations/ creates them; this module
only lets queries be built as expressions instead of assembled strings)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.dialects.postgresql import ARRAY

metadata = MetaData()

patient = Table(
    "patient",
    metadata,
    Column("patient_key", BigInteger, primary_key=True),
    Column("patient_id", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True)),
)

document_entry = Table(
    "document_entry",
    metadata,
    Column("patient_key", BigInteger, primary_key=True),
    Column("entry_uuid", Uuid, primary_key=True),
    Column("logical_id", Uuid, nullable=False),
    Column("version", Integer, nullable=False),
    Column("unique_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("object_type", Text, nullable=False),
    Column("mime_type", Text, nullable=False),
    Column("class_code", Text),
    Column("type_code", Text),
    Column("format_code", Text),
    Column("facility_code", Text),
    Column("practice_code", Text),
    Column("confidentiality_codes", ARRAY(Text), nullable=False),
    Column("event_codes", ARRAY(Text), nullable=False),
    Column("author_persons", ARRAY(Text), nullable=False),
    Column("creation_time", Text),
    Column("service_start_time", Text),
    Column("service_stop_time", Text),
    Column("hash_sha1", Text),
    Column("size", BigInteger),
    Column("repository_unique_id", Text),
    Column("content_sha256", Text),
    Column("reference_ids", ARRAY(Text), nullable=False),
    Column("availability", Text),
    Column("registered_at", DateTime(timezone=True)),
    Column("ebrim", Text, nullable=False),
)

submission_set = Table(
    "submission_set",
    metadata,
    Column("patient_key", BigInteger, primary_key=True),
    Column("entry_uuid", Uuid, primary_key=True),
    Column("unique_id", Text, nullable=False),
    Column("source_id", Text),
    Column("status", Text, nullable=False),
    Column("submission_time", Text),
    Column("content_type_code", Text),
    Column("author_persons", ARRAY(Text), nullable=False),
    Column("registered_at", DateTime(timezone=True)),
    Column("ebrim", Text, nullable=False),
)

folder = Table(
    "folder",
    metadata,
    Column("patient_key", BigInteger, primary_key=True),
    Column("entry_uuid", Uuid, primary_key=True),
    Column("logical_id", Uuid, nullable=False),
    Column("version", Integer, nullable=False),
    Column("unique_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("codes", ARRAY(Text), nullable=False),
    Column("last_update_time", Text),
    Column("registered_at", DateTime(timezone=True)),
    Column("ebrim", Text, nullable=False),
)

association = Table(
    "association",
    metadata,
    Column("patient_key", BigInteger, primary_key=True),
    Column("entry_uuid", Uuid, primary_key=True),
    Column("association_type", Text, nullable=False),
    Column("source_uuid", Uuid, nullable=False),
    Column("target_uuid", Uuid, nullable=False),
    Column("status", Text, nullable=False),
    Column("registered_at", DateTime(timezone=True)),
    Column("ebrim", Text, nullable=False),
)

object_locator = Table(
    "object_locator",
    metadata,
    Column("entry_uuid", Uuid, primary_key=True),
    Column("patient_key", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
)

unique_id_locator = Table(
    "unique_id_locator",
    metadata,
    Column("kind", Text, primary_key=True),
    Column("unique_id", Text, primary_key=True),
    Column("patient_key", BigInteger, nullable=False),
)

KIND_TABLES = {
    "DocumentEntry": document_entry,
    "SubmissionSet": submission_set,
    "Folder": folder,
    "Association": association,
}
