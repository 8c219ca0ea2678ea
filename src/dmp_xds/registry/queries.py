"""ITI-18 stored queries, one function each, registered by their standard UUID in ``QUERIES``.

Every query is built as a SQLAlchemy Core expression with bound parameters (never SQL text from
request values) and starts from the patient's rows: Find* queries take the patient id, Get*
queries find the patient through the locator tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, and_, exists, func, literal, or_, select
from sqlalchemy.sql.elements import ColumnElement

from ..errors import ErrorCode, XdsError, XdsFailure
from ..metadata import vocabulary as v
from ..metadata.datatypes import dtm_key, parse_patient_id
from . import tables as t
from .query_params import Param, QueryRequest, alternatives, and_groups, check_params, single


@dataclass(frozen=True, slots=True)
class Found:
    """One registry object a query returns."""

    kind: str
    entry_uuid: uuid.UUID
    status: str
    ebrim: str


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


def _patient_key(conn: Connection, req: QueryRequest, name: str) -> int | None:
    value = single(req, name) or ""
    try:
        canonical = parse_patient_id(value).canonical
    except ValueError as exc:
        raise XdsFailure(XdsError(ErrorCode.REGISTRY_ERROR, f"{name}: {exc}", name)) from exc
    return conn.execute(
        select(t.patient.c.patient_key).where(t.patient.c.patient_id == canonical)
    ).scalar_one_or_none()


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
    author = func.unnest(column).table_valued("value").alias("author")
    return exists(
        select(literal(1))
        .select_from(author)
        .where(or_(*[author.c.value.like(p) for p in patterns]))
    )


def _found(rows: Sequence, kind: str) -> list[Found]:
    return [Found(kind, r.entry_uuid, r.status, r.ebrim) for r in rows]


# --- FindDocuments ---------------------------------------------------------------------------

_DE = "$XDSDocumentEntry"
FIND_DOCUMENTS_PARAMS = (
    Param(_DE + "PatientId", required=True, multiple=False),
    Param(_DE + "ClassCode"),
    Param(_DE + "TypeCode"),
    Param(_DE + "PracticeSettingCode"),
    Param(_DE + "CreationTimeFrom", multiple=False),
    Param(_DE + "CreationTimeTo", multiple=False),
    Param(_DE + "ServiceStartTimeFrom", multiple=False),
    Param(_DE + "ServiceStartTimeTo", multiple=False),
    Param(_DE + "ServiceStopTimeFrom", multiple=False),
    Param(_DE + "ServiceStopTimeTo", multiple=False),
    Param(_DE + "HealthcareFacilityTypeCode"),
    Param(_DE + "EventCodeList", and_groups=True),
    Param(_DE + "ConfidentialityCode", and_groups=True),
    Param(_DE + "AuthorPerson"),
    Param(_DE + "FormatCode"),
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
        select(de.c.entry_uuid, de.c.status, de.c.ebrim)
        .where(de.c.patient_key == key, *_document_filters(req))
        .order_by(de.c.creation_time.desc(), de.c.entry_uuid)
        .limit(limit + 1)
    ).all()
    _too_many(len(rows), limit)
    return _found(rows, "DocumentEntry")


# --- GetDocuments ----------------------------------------------------------------------------

GET_DOCUMENTS_PARAMS = (
    Param(_DE + "EntryUUID"),
    Param(_DE + "UniqueId"),
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


def get_documents(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    de = t.document_entry
    if req.params.get(_DE + "EntryUUID"):
        wanted = _uuid_values(req, _DE + "EntryUUID")
        loc = t.object_locator
        keys = select(loc.c.patient_key).where(loc.c.entry_uuid.in_(wanted)).distinct()
        where = and_(de.c.patient_key.in_(keys), de.c.entry_uuid.in_(wanted))
    else:
        wanted_uids = alternatives(req, _DE + "UniqueId")
        loc = t.unique_id_locator
        keys = (
            select(loc.c.patient_key)
            .where(loc.c.kind == "DocumentEntry", loc.c.unique_id.in_(wanted_uids))
            .distinct()
        )
        where = and_(de.c.patient_key.in_(keys), de.c.unique_id.in_(wanted_uids))
    rows = conn.execute(
        select(de.c.entry_uuid, de.c.status, de.c.ebrim).where(where).limit(limit + 1)
    ).all()
    _too_many(len(rows), limit)
    return _found(rows, "DocumentEntry")


QUERIES: dict[str, StoredQuery] = {
    q.query_id: q
    for q in (
        StoredQuery("FindDocuments", v.FIND_DOCUMENTS, FIND_DOCUMENTS_PARAMS, find_documents),
        StoredQuery(
            "GetDocuments",
            v.GET_DOCUMENTS,
            GET_DOCUMENTS_PARAMS,
            get_documents,
            one_of=((_DE + "EntryUUID", _DE + "UniqueId"),),
        ),
    )
}


def run_stored_query(conn: Connection, req: QueryRequest, limit: int) -> list[Found]:
    """Check the parameters of ``req`` and run it; errors raise :class:`XdsFailure`."""
    query = QUERIES.get(req.query_id)
    if query is None:
        raise XdsFailure(
            XdsError(
                ErrorCode.UNKNOWN_STORED_QUERY,
                f"stored query {req.query_id} is not supported by this registry",
                "AdhocQuery/@id",
            )
        )
    errors = check_params(req, query.params, query.one_of)
    if errors:
        raise XdsFailure(errors)
    return query.run(conn, req, limit)
