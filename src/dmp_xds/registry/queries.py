"""ITI-18 stored queries, one function each, registered by their standard UUID in ``QUERIES``.

Every query is built as a SQLAlchemy Core expression with bound parameters (never SQL text from
request values) and starts from the patient's rows: Find* queries take the patient id, Get*
queries find the patient through the locator tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    Table,
    any_,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement

from ..errors import ErrorCode, XdsError, XdsFailure
from ..metadata import vocabulary as v
from ..metadata.datatypes import dtm_key, parse_patient_id
from . import tables as t
from .database import Precompiled
from .query_params import Param, QueryRequest, alternatives, and_groups, check_params, single


@dataclass(frozen=True, slots=True)
class Found:
    """One registry object a query returns."""

    kind: str
    entry_uuid: uuid.UUID
    status: str
    ebrim: str
    patient_key: int  # whose object it is (Get* answers keep the VIHF patient's only)
    source: uuid.UUID | None = None  # association ends
    target: uuid.UUID | None = None
    facts: Any = None  # DocumentEntry: the row of DOCUMENT_FACT_COLUMNS (access policy)


@dataclass(frozen=True)
class StoredQuery:
    name: str
    query_id: str
    params: tuple[Param, ...]
    run: Callable[[Connection, QueryRequest, int], list[Found]]
    one_of: tuple[tuple[str, ...], ...] = field(default_factory=tuple)


def _too_many(n: int, limit: int) -> None:
    if n > limit:
        raise XdsFailure(
            XdsError(
                ErrorCode.TOO_MANY_RESULTS,
                f"the query matches more than {limit} objects; narrow it down",
                "AdhocQuery",
            )
        )


def patient_key(conn: Connection, patient_id: str) -> int | None:
    """The registry key of a patient id (any CX form of it), None when unknown; raises
    ValueError for a malformed id."""
    canonical = parse_patient_id(patient_id).canonical
    return conn.execute(_PATIENT_KEY, {"patient_id": canonical}).scalar_one_or_none()


# Built once: every call of every transaction looks a patient up.
_PATIENT_KEY = select(t.patient.c.patient_key).where(
    t.patient.c.patient_id == bindparam("patient_id")
)


def _patient_key(conn: Connection, req: QueryRequest, name: str) -> int | None:
    try:
        canonical = parse_patient_id(single(req, name) or "").canonical
        if canonical in req.known_keys:
            return req.known_keys[canonical]
        return patient_key(conn, canonical)
    except ValueError as exc:
        raise XdsFailure(XdsError(ErrorCode.REGISTRY_ERROR, f"{name}: {exc}", name)) from exc


def _time_range(column: ColumnElement, req: QueryRequest, prefix: str) -> list[ColumnElement]:
    """``From`` is inclusive, ``To`` exclusive (ITI-18 3.18.4.1.2.3.6)."""
    clauses = []
    low, high = single(req, prefix + "From"), single(req, prefix + "To")
    if low:
        clauses.append(column >= dtm_key(low))
    if high:
        clauses.append(column < dtm_key(high))
    return clauses


def _array_groups(column: ColumnElement, groups: list[list[str]]) -> list[ColumnElement]:
    """Each group is an OR list (array overlap); groups are ANDed."""
    return [column.op("&&")(literal(g, type_=column.type)) for g in groups if g]


def _status_filter(column: ColumnElement, req: QueryRequest, name: str) -> ColumnElement:
    return column.in_(alternatives(req, name))


def _author_filter(column: ColumnElement, patterns: list[str]) -> ColumnElement:
    """Author patterns use SQL LIKE wildcards (% and _), as ITI-18 defines them."""
    author = func.unnest(column).table_valued("value").render_derived(name="author")
    return exists(
        select(literal(1))
        .select_from(author)
        .where(or_(*[author.c.value.like(p) for p in patterns]))
    )


# What DMP access policy reads of a DocumentEntry (patients/gate.py), selected with it so that
# filtering an answer costs no second query.
DOCUMENT_FACT_COLUMNS = (
    t.document_entry.c.status,
    t.document_entry.c.confidentiality_codes,
    t.document_entry.c.author_persons,
    t.document_entry.c.type_code,
    t.document_entry.c.ebrim,
)


def requested_objects(req: QueryRequest) -> list[str]:
    """The registry objects a query names by identifier (the entryUUIDs and uniqueIds of Get*
    queries), for the trail of a call that does not answer them: a refused or failed read
    still says what it asked for."""
    return [
        value
        for name in req.params
        if name == "$uuid" or name.endswith(("EntryUUID", "UniqueId"))
        for value in alternatives(req, name)
    ]


def document_facts(
    conn: Connection, key: int, entry_uuids: Collection[uuid.UUID]
) -> dict[uuid.UUID, Any]:
    """The :data:`DOCUMENT_FACT_COLUMNS` rows of some of a patient's DocumentEntries, in one
    query (ids that are not the patient's DocumentEntries are left out)."""
    if not entry_uuids:
        return {}
    rows = _FACTS_OF.execute(conn, {"key": key, "ids": list(entry_uuids)})
    return {row.entry_uuid: row for row in rows}


def _columns(table: Table) -> tuple[ColumnElement, ...]:
    """What a query selects of the objects it returns."""
    if table is t.document_entry:
        return (table.c.patient_key, table.c.entry_uuid, *DOCUMENT_FACT_COLUMNS)
    if table is t.association:
        return (
            table.c.patient_key,
            table.c.entry_uuid,
            table.c.status,
            table.c.ebrim,
            table.c.source_uuid,
            table.c.target_uuid,
        )
    return (table.c.patient_key, table.c.entry_uuid, table.c.status, table.c.ebrim)


def _found(rows: Sequence, kind: str) -> list[Found]:
    if kind == "Association":
        return [
            Found(
                kind,
                r.entry_uuid,
                r.status,
                r.ebrim,
                r.patient_key,
                source=r.source_uuid,
                target=r.target_uuid,
            )
            for r in rows
        ]
    if kind == "DocumentEntry":
        return [Found(kind, r.entry_uuid, r.status, r.ebrim, r.patient_key, facts=r) for r in rows]
    return [Found(kind, r.entry_uuid, r.status, r.ebrim, r.patient_key) for r in rows]


def any_of(column: ColumnElement, name: str) -> ColumnElement:
    """``column = ANY(:name)``, one bound array rather than an IN list of bound values: the
    statement is the same whatever the number of values, so it can be built once (building
    and keying a Core statement costs ~170 us of CPU a call, more than its round trip), and
    PostgreSQL still prunes the partitions of a constant array."""
    return column == any_(bindparam(name, type_=ARRAY(column.type)))


def _by(table: Table, id_column: str) -> Select:
    """A patient's objects of ``table`` by id, in entryUUID order (keys, ids: arrays)."""
    return (
        select(*_columns(table))
        .where(any_of(table.c.patient_key, "keys"), any_of(table.c[id_column], "ids"))
        .order_by(table.c.entry_uuid)
    )


# Built once (the documents a submission, an update or an answer's filter names).
_FACTS_OF = Precompiled(
    select(t.document_entry.c.entry_uuid, *DOCUMENT_FACT_COLUMNS).where(
        t.document_entry.c.patient_key == bindparam("key"),
        any_of(t.document_entry.c.entry_uuid, "ids"),
    )
)
# Built once, the statements every Get* query runs.
_BY_UUID = {kind: _by(table, "entry_uuid") for kind, table in t.KIND_TABLES.items()}
_RUN_BY_UUID = {kind: Precompiled(statement) for kind, statement in _BY_UUID.items()}
_BY_UID = {
    kind: Precompiled(_by(table, "unique_id"))
    for kind, table in t.KIND_TABLES.items()
    if "unique_id" in table.c
}
_LOCATE_UUIDS = Precompiled(
    select(t.object_locator.c.patient_key)
    .where(
        any_of(t.object_locator.c.entry_uuid, "ids"), t.object_locator.c.kind == bindparam("kind")
    )
    .distinct()
)
_OWNERS = Precompiled(
    select(t.object_locator.c.patient_key)
    .where(any_of(t.object_locator.c.entry_uuid, "ids"))
    .distinct()
)
_LOCATE_UIDS = Precompiled(
    select(t.unique_id_locator.c.patient_key)
    .where(
        t.unique_id_locator.c.kind == bindparam("kind"),
        any_of(t.unique_id_locator.c.unique_id, "ids"),
    )
    .distinct()
)


# --- FindDocuments ---------------------------------------------------------------------------

_DE = "$XDSDocumentEntry"
FIND_DOCUMENTS_PARAMS = (
    Param(_DE + "PatientId", required=True, multiple=False),
    Param(_DE + "ClassCode", coded=True),
    Param(_DE + "TypeCode", coded=True),
    Param(_DE + "PracticeSettingCode", coded=True),
    Param(_DE + "CreationTimeFrom", multiple=False),
    Param(_DE + "CreationTimeTo", multiple=False),
    Param(_DE + "ServiceStartTimeFrom", multiple=False),
    Param(_DE + "ServiceStartTimeTo", multiple=False),
    Param(_DE + "ServiceStopTimeFrom", multiple=False),
    Param(_DE + "ServiceStopTimeTo", multiple=False),
    Param(_DE + "HealthcareFacilityTypeCode", coded=True),
    Param(_DE + "EventCodeList", and_groups=True, coded=True),
    Param(_DE + "ConfidentialityCode", and_groups=True, coded=True),
    Param(_DE + "AuthorPerson"),
    Param(_DE + "FormatCode", coded=True),
    Param(_DE + "Status", required=True),
    Param(_DE + "Type"),
    Param("$MetadataLevel", multiple=False),
)


def _document_filters(req: QueryRequest) -> list[ColumnElement]:
    de = t.document_entry
    clauses: list[ColumnElement] = [_status_filter(de.c.status, req, _DE + "Status")]
    for name, column in (
        ("ClassCode", de.c.class_code),
        ("TypeCode", de.c.type_code),
        ("PracticeSettingCode", de.c.practice_code),
        ("HealthcareFacilityTypeCode", de.c.facility_code),
        ("FormatCode", de.c.format_code),
    ):
        values = alternatives(req, _DE + name)
        if values:
            clauses.append(column.in_(values))
    clauses += _time_range(de.c.creation_time, req, _DE + "CreationTime")
    clauses += _time_range(de.c.service_start_time, req, _DE + "ServiceStartTime")
    clauses += _time_range(de.c.service_stop_time, req, _DE + "ServiceStopTime")
    clauses += _array_groups(de.c.event_codes, and_groups(req, _DE + "EventCodeList"))
    clauses += _array_groups(
        de.c.confidentiality_codes, and_groups(req, _DE + "ConfidentialityCode")
    )
    authors = alternatives(req, _DE + "AuthorPerson")
    if authors:
        clauses.append(_author_filter(de.c.author_persons, authors))
    types = alternatives(req, _DE + "Type")
    clauses.append(de.c.object_type.in_(types or [v.STABLE_DOCUMENT]))
    return clauses


def find_documents(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    key = _patient_key(conn, req, _DE + "PatientId")
    if key is None:
        return []
    de = t.document_entry
    rows = conn.execute(
        select(*_columns(de))
        .where(de.c.patient_key == key, *_document_filters(req))
        .order_by(de.c.creation_time.desc(), de.c.entry_uuid)
        .limit(limit + 1)
    ).all()
    _too_many(len(rows), limit)
    return _found(rows, "DocumentEntry")


# --- lookups shared by the Get* queries ------------------------------------------------------

GET_PARAMS_COMMON = (
    Param("$homeCommunityId", multiple=False),
    Param("$MetadataLevel", multiple=False),
)


def _uuid_values(req: QueryRequest, name: str) -> list[uuid.UUID]:
    result = []
    for value in alternatives(req, name):
        try:
            result.append(uuid.UUID(value.removeprefix("urn:uuid:")))
        except ValueError as exc:
            raise XdsFailure(
                XdsError(ErrorCode.REGISTRY_ERROR, f"{name}: {value!r} is not a UUID", name)
            ) from exc
    return result


def _named(
    conn: Connection, req: QueryRequest, kind: str, uuid_param: str, uid_param: str
) -> list[Found]:
    """The objects of ``kind`` named by entryUUID or uniqueId: the locator says whose they
    are (one patient, or XDSResultNotSinglePatient), then their rows are read by constant
    patient key: with a join or subquery the planner could not prune the partitions
    (migration 0006), nor Citus route to one shard."""
    if req.params.get(uuid_param):
        ids: list = _uuid_values(req, uuid_param)
        patients = set(_LOCATE_UUIDS.execute(conn, {"ids": ids, "kind": kind}).scalars())
        statement = _RUN_BY_UUID[kind]
    else:
        ids = alternatives(req, uid_param)
        patients = set(_LOCATE_UIDS.execute(conn, {"ids": ids, "kind": kind}).scalars())
        statement = _BY_UID[kind]
    if not patients:
        return []
    _single_patient(patients)
    return _found(statement.execute(conn, {"keys": list(patients), "ids": ids}).all(), kind)


def _single_patient(patients: Collection[int]) -> None:
    """Get* queries answer for one patient at a time (ITI-18 XDSResultNotSinglePatient)."""
    if len(patients) > 1:
        raise XdsFailure(
            XdsError(
                ErrorCode.RESULT_NOT_SINGLE_PATIENT,
                "the objects asked for belong to more than one patient",
                "AdhocQuery",
            )
        )


def _objects(
    conn: Connection,
    kind: str,
    keys: Sequence[tuple[int, uuid.UUID]],
    *filters: ColumnElement,
) -> list[Found]:
    if not keys:
        return []
    values = {"keys": list({k for k, _ in keys}), "ids": list({u for _, u in keys})}
    if filters:  # a statement of its own, built for this call
        return _found(conn.execute(_BY_UUID[kind].where(*filters), values).all(), kind)
    return _found(_RUN_BY_UUID[kind].execute(conn, values).all(), kind)


def _associations(
    conn: Connection,
    patients: set[int],
    *,
    touching: Sequence[uuid.UUID] = (),
    sources: Sequence[uuid.UUID] = (),
    types: Sequence[str] = (),
) -> list[Found]:
    """Associations whose source or target is in ``touching``, or whose source is in
    ``sources``; optionally of the given types."""
    a = t.association
    ends = []
    if touching:
        ends += [a.c.source_uuid.in_(touching), a.c.target_uuid.in_(touching)]
    if sources:
        ends.append(a.c.source_uuid.in_(sources))
    if not ends or not patients:
        return []
    filters = [a.c.patient_key.in_(patients), or_(*ends)]
    if types:
        filters.append(a.c.association_type.in_(types))
    rows = conn.execute(select(*_columns(a)).where(*filters).order_by(a.c.entry_uuid)).all()
    return _found(rows, "Association")


def _member_filters(req: QueryRequest) -> list[ColumnElement]:
    """The DocumentEntry filters the *AndContents queries accept."""
    de = t.document_entry
    clauses: list[ColumnElement] = []
    formats = alternatives(req, _DE + "FormatCode")
    if formats:
        clauses.append(de.c.format_code.in_(formats))
    clauses += _array_groups(
        de.c.confidentiality_codes, and_groups(req, _DE + "ConfidentialityCode")
    )
    clauses.append(de.c.object_type.in_(alternatives(req, _DE + "Type") or [v.STABLE_DOCUMENT]))
    return clauses


MEMBER_FILTER_PARAMS = (
    Param(_DE + "FormatCode", coded=True),
    Param(_DE + "ConfidentialityCode", and_groups=True, coded=True),
    Param(_DE + "Type"),
)


def _limited(found: list[Found], limit: int) -> list[Found]:
    _too_many(len(found), limit)
    return found


# --- GetDocuments, GetFolders, GetSubmissionSets ------------------------------------------------


def get_documents(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    return _limited(_named(conn, req, "DocumentEntry", _DE + "EntryUUID", _DE + "UniqueId"), limit)


def get_folders(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    return _limited(_named(conn, req, "Folder", "$XDSFolderEntryUUID", "$XDSFolderUniqueId"), limit)


def get_associations(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    wanted = _uuid_values(req, "$uuid")
    patients = _patients_of(conn, wanted)
    return _limited(_associations(conn, patients, touching=wanted), limit)


def get_documents_and_associations(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    docs = _named(conn, req, "DocumentEntry", _DE + "EntryUUID", _DE + "UniqueId")
    assocs = _associations(
        conn, {d.patient_key for d in docs}, touching=[d.entry_uuid for d in docs]
    )
    return _limited(docs + assocs, limit)


def get_submission_sets(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    """The SubmissionSets that hold the given objects, and the HasMember links to them."""
    wanted = _uuid_values(req, "$uuid")
    patients = _patients_of(conn, wanted)
    a = t.association
    links = conn.execute(
        select(*_columns(a))
        .join(
            t.object_locator,
            (t.object_locator.c.entry_uuid == a.c.source_uuid)
            & (t.object_locator.c.kind == "SubmissionSet"),
        )
        .where(
            a.c.patient_key.in_(patients),
            a.c.target_uuid.in_(wanted),
            a.c.association_type == v.HAS_MEMBER,
        )
    ).all()
    sets = _objects(conn, "SubmissionSet", sorted({(r.patient_key, r.source_uuid) for r in links}))
    return _limited(sets + _found(links, "Association"), limit)


def _patients_of(conn: Connection, uuids: Sequence[uuid.UUID]) -> set[int]:
    patients = set(_OWNERS.execute(conn, {"ids": list(uuids)}).scalars())
    _single_patient(patients)
    return patients


# --- *AndContents --------------------------------------------------------------------------------


def _contents(conn: Connection, req: QueryRequest, package: list[Found], limit: int) -> list[Found]:
    """A package (SubmissionSet or Folder), the DocumentEntries (filtered) and folders it
    holds, and the HasMember associations between them."""
    if not package:
        return []
    kind = package[0].kind
    patients = {p.patient_key for p in package}
    package_ids = [p.entry_uuid for p in package]
    links = _associations(conn, patients, sources=package_ids, types=[v.HAS_MEMBER])
    member_ids = [link.target for link in links]
    members = _objects(
        conn, "DocumentEntry", [(k, m) for k in patients for m in member_ids], *_member_filters(req)
    )
    folders: list[Found] = []
    if kind == "SubmissionSet":
        folders = _objects(conn, "Folder", [(k, m) for k in patients for m in member_ids])
    kept = {p.entry_uuid for p in (*package, *members, *folders)}
    # Keep links to kept objects, and SS -> (Folder -> Document) links whose target link is kept.
    direct = [link for link in links if link.target in kept]
    inner = {link.entry_uuid for link in direct}
    if kind == "SubmissionSet":
        folder_links = _associations(
            conn, patients, sources=[f.entry_uuid for f in folders], types=[v.HAS_MEMBER]
        )
        folder_links = [link for link in folder_links if link.target in kept]
        inner |= {link.entry_uuid for link in folder_links}
        direct += folder_links
        direct += [link for link in links if link.target in inner and link not in direct]
    return _limited(package + members + folders + _dedupe(direct), limit)


def _dedupe(found: list[Found]) -> list[Found]:
    seen: set[uuid.UUID] = set()
    result = []
    for f in found:
        if f.entry_uuid not in seen:
            seen.add(f.entry_uuid)
            result.append(f)
    return result


def get_submission_set_and_contents(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    package = _named(
        conn, req, "SubmissionSet", "$XDSSubmissionSetEntryUUID", "$XDSSubmissionSetUniqueId"
    )
    return _contents(conn, req, package, limit)


def get_folder_and_contents(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    package = _named(conn, req, "Folder", "$XDSFolderEntryUUID", "$XDSFolderUniqueId")
    return _contents(conn, req, package, limit)


def get_folders_for_document(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    named = _named(conn, req, "DocumentEntry", _DE + "EntryUUID", _DE + "UniqueId")
    keys = [(d.patient_key, d.entry_uuid) for d in named]
    patients = {k for k, _ in keys}
    links = _associations(conn, patients, touching=[u for _, u in keys], types=[v.HAS_MEMBER])
    folder_ids = [link.source for link in links if link.target in {u for _, u in keys}]
    return _limited(_objects(conn, "Folder", [(k, f) for k in patients for f in folder_ids]), limit)


def get_related_documents(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    """The document, the documents related to it by the given association types, and those
    associations (ITI-18 GetRelatedDocuments)."""
    named = _named(conn, req, "DocumentEntry", _DE + "EntryUUID", _DE + "UniqueId")
    keys = [(d.patient_key, d.entry_uuid) for d in named]
    if not keys:
        return []
    patients = {k for k, _ in keys}
    origin = [u for _, u in keys]
    links = _associations(
        conn, patients, touching=origin, types=alternatives(req, "$AssociationTypes")
    )
    if not links:
        return []
    others = {link.source for link in links} | {link.target for link in links}
    docs = _objects(
        conn,
        "DocumentEntry",
        [(k, d) for k in patients for d in others],
        t.document_entry.c.object_type.in_(alternatives(req, _DE + "Type") or [v.STABLE_DOCUMENT]),
    )
    return _limited(docs + links, limit)


# --- Find* and GetAll ---------------------------------------------------------------------------

FIND_BY_REFERENCE_PARAMS = (
    *FIND_DOCUMENTS_PARAMS,
    Param(_DE + "ReferenceIdList", required=True),
)


def find_documents_by_reference_id(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    key = _patient_key(conn, req, _DE + "PatientId")
    if key is None:
        return []
    de = t.document_entry
    refs = alternatives(req, _DE + "ReferenceIdList")
    rows = conn.execute(
        select(*_columns(de))
        .where(
            de.c.patient_key == key,
            de.c.reference_ids.op("&&")(literal(refs, type_=de.c.reference_ids.type)),
            *_document_filters(req),
        )
        .order_by(de.c.creation_time.desc(), de.c.entry_uuid)
        .limit(limit + 1)
    ).all()
    _too_many(len(rows), limit)
    return _found(rows, "DocumentEntry")


_SS = "$XDSSubmissionSet"
FIND_SUBMISSION_SETS_PARAMS = (
    Param(_SS + "PatientId", required=True, multiple=False),
    Param(_SS + "SourceId"),
    Param(_SS + "SubmissionTimeFrom", multiple=False),
    Param(_SS + "SubmissionTimeTo", multiple=False),
    Param(_SS + "AuthorPerson", multiple=False),
    Param(_SS + "ContentType", coded=True),
    Param(_SS + "Status", required=True),
    Param("$MetadataLevel", multiple=False),
)


def find_submission_sets(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    key = _patient_key(conn, req, _SS + "PatientId")
    if key is None:
        return []
    ss = t.submission_set
    clauses = [ss.c.patient_key == key, _status_filter(ss.c.status, req, _SS + "Status")]
    sources = alternatives(req, _SS + "SourceId")
    if sources:
        clauses.append(ss.c.source_id.in_(sources))
    content = alternatives(req, _SS + "ContentType")
    if content:
        clauses.append(ss.c.content_type_code.in_(content))
    clauses += _time_range(ss.c.submission_time, req, _SS + "SubmissionTime")
    author = alternatives(req, _SS + "AuthorPerson")
    if author:
        clauses.append(_author_filter(ss.c.author_persons, author))
    rows = conn.execute(
        select(*_columns(ss))
        .where(*clauses)
        .order_by(ss.c.submission_time.desc(), ss.c.entry_uuid)
        .limit(limit + 1)
    ).all()
    _too_many(len(rows), limit)
    return _found(rows, "SubmissionSet")


_FOL = "$XDSFolder"
FIND_FOLDERS_PARAMS = (
    Param(_FOL + "PatientId", required=True, multiple=False),
    Param(_FOL + "LastUpdateTimeFrom", multiple=False),
    Param(_FOL + "LastUpdateTimeTo", multiple=False),
    Param(_FOL + "CodeList", and_groups=True, coded=True),
    Param(_FOL + "Status", required=True),
    Param("$MetadataLevel", multiple=False),
)


def find_folders(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    key = _patient_key(conn, req, _FOL + "PatientId")
    if key is None:
        return []
    f = t.folder
    rows = conn.execute(
        select(*_columns(f))
        .where(
            f.c.patient_key == key,
            _status_filter(f.c.status, req, _FOL + "Status"),
            *_time_range(f.c.last_update_time, req, _FOL + "LastUpdateTime"),
            *_array_groups(f.c.codes, and_groups(req, _FOL + "CodeList")),
        )
        .order_by(f.c.last_update_time.desc(), f.c.entry_uuid)
        .limit(limit + 1)
    ).all()
    _too_many(len(rows), limit)
    return _found(rows, "Folder")


GET_ALL_PARAMS = (
    Param("$patientId", required=True, multiple=False),
    Param(_DE + "Status", required=True),
    Param(_SS + "Status", required=True),
    Param(_FOL + "Status", required=True),
    *MEMBER_FILTER_PARAMS,
    Param("$MetadataLevel", multiple=False),
)


def get_all(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    """Everything of one patient (filtered), and the associations among what is returned."""
    key = _patient_key(conn, req, "$patientId")
    if key is None:
        return []
    de, ss, f = t.document_entry, t.submission_set, t.folder
    found: list[Found] = []
    for kind, table, filters in (
        ("SubmissionSet", ss, [_status_filter(ss.c.status, req, _SS + "Status")]),
        (
            "DocumentEntry",
            de,
            [_status_filter(de.c.status, req, _DE + "Status"), *_member_filters(req)],
        ),
        ("Folder", f, [_status_filter(f.c.status, req, _FOL + "Status")]),
    ):
        rows = conn.execute(
            select(*_columns(table))
            .where(table.c.patient_key == key, *filters)
            .order_by(table.c.entry_uuid)
            .limit(limit + 1)
        ).all()
        found += _found(rows, kind)
        _too_many(len(found), limit)
    ids = {x.entry_uuid for x in found}
    links = [link for link in _associations(conn, {key}, sources=list(ids)) if link.source in ids]
    link_ids = {link.entry_uuid for link in links}
    # Keep links between returned objects, and links from a returned object to such a link
    # (SubmissionSet -> (Folder -> Document)).
    links = [link for link in links if link.target in ids or link.target in link_ids]
    return _limited(found + links, limit)


def _identity_params(prefix: str, *, multiple: bool = True) -> tuple[Param, Param]:
    """The two ways a Get* query names its objects: entryUUID or uniqueId."""
    return (
        Param(prefix + "EntryUUID", multiple=multiple),
        Param(prefix + "UniqueId", multiple=multiple),
    )


_ONE_DE = ((_DE + "EntryUUID", _DE + "UniqueId"),)
QUERIES: dict[str, StoredQuery] = {
    q.query_id: q
    for q in (
        StoredQuery("FindDocuments", v.FIND_DOCUMENTS, FIND_DOCUMENTS_PARAMS, find_documents),
        StoredQuery(
            "FindDocumentsByReferenceId",
            v.FIND_DOCUMENTS_BY_REFERENCE_ID,
            FIND_BY_REFERENCE_PARAMS,
            find_documents_by_reference_id,
        ),
        StoredQuery(
            "FindSubmissionSets",
            v.FIND_SUBMISSION_SETS,
            FIND_SUBMISSION_SETS_PARAMS,
            find_submission_sets,
        ),
        StoredQuery("FindFolders", v.FIND_FOLDERS, FIND_FOLDERS_PARAMS, find_folders),
        StoredQuery("GetAll", v.GET_ALL, GET_ALL_PARAMS, get_all),
        StoredQuery(
            "GetDocuments",
            v.GET_DOCUMENTS,
            (*_identity_params(_DE), *GET_PARAMS_COMMON),
            get_documents,
            one_of=_ONE_DE,
        ),
        StoredQuery(
            "GetFolders",
            v.GET_FOLDERS,
            (*_identity_params(_FOL), *GET_PARAMS_COMMON),
            get_folders,
            one_of=((_FOL + "EntryUUID", _FOL + "UniqueId"),),
        ),
        StoredQuery(
            "GetAssociations",
            v.GET_ASSOCIATIONS,
            (Param("$uuid", required=True), *GET_PARAMS_COMMON),
            get_associations,
        ),
        StoredQuery(
            "GetDocumentsAndAssociations",
            v.GET_DOCUMENTS_AND_ASSOCIATIONS,
            (*_identity_params(_DE), *GET_PARAMS_COMMON),
            get_documents_and_associations,
            one_of=_ONE_DE,
        ),
        StoredQuery(
            "GetSubmissionSets",
            v.GET_SUBMISSION_SETS,
            (Param("$uuid", required=True), *GET_PARAMS_COMMON),
            get_submission_sets,
        ),
        StoredQuery(
            "GetSubmissionSetAndContents",
            v.GET_SUBMISSION_SET_AND_CONTENTS,
            (
                *_identity_params(_SS, multiple=False),
                *MEMBER_FILTER_PARAMS,
                *GET_PARAMS_COMMON,
            ),
            get_submission_set_and_contents,
            one_of=((_SS + "EntryUUID", _SS + "UniqueId"),),
        ),
        StoredQuery(
            "GetFolderAndContents",
            v.GET_FOLDER_AND_CONTENTS,
            (
                *_identity_params(_FOL, multiple=False),
                *MEMBER_FILTER_PARAMS,
                *GET_PARAMS_COMMON,
            ),
            get_folder_and_contents,
            one_of=((_FOL + "EntryUUID", _FOL + "UniqueId"),),
        ),
        StoredQuery(
            "GetFoldersForDocument",
            v.GET_FOLDERS_FOR_DOCUMENT,
            (
                *_identity_params(_DE, multiple=False),
                *GET_PARAMS_COMMON,
            ),
            get_folders_for_document,
            one_of=_ONE_DE,
        ),
        StoredQuery(
            "GetRelatedDocuments",
            v.GET_RELATED_DOCUMENTS,
            (
                *_identity_params(_DE, multiple=False),
                Param("$AssociationTypes", required=True),
                Param(_DE + "Type"),
                *GET_PARAMS_COMMON,
            ),
            get_related_documents,
            one_of=_ONE_DE,
        ),
    )
}


def stored_query_for(req: QueryRequest) -> StoredQuery:
    """The stored query ``req`` names, or :class:`XdsFailure` (XDSUnknownStoredQuery)."""
    query = QUERIES.get(req.query_id)
    if query is None:
        raise XdsFailure(
            XdsError(
                ErrorCode.UNKNOWN_STORED_QUERY,
                f"stored query {req.query_id} is not supported by this registry",
                "AdhocQuery/@id",
            )
        )
    return query


def parameter_errors(req: QueryRequest) -> list[XdsError]:
    """What the stored query ``req`` names refuses in its parameters (none for an unknown
    query: :func:`stored_query_for` says that)."""
    query = QUERIES.get(req.query_id)
    return check_params(req, query.params, query.one_of) if query else []


def run_stored_query(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    """Check the parameters of ``req`` and run it; errors raise :class:`XdsFailure`."""
    query = stored_query_for(req)
    errors = parameter_errors(req)
    if errors:
        raise XdsFailure(errors)
    return query.run(conn, req, limit)
