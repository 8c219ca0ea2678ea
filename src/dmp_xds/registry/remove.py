"""ITI-62 Remove Metadata (Delete Document Set): erase exactly the listed registry objects.

The request names DocumentEntries, SubmissionSets, Folders and Associations by entryUUID in an
``rim:ObjectRefList``. Either all of them go, in the caller's transaction, or none does; every
problem is reported in one answer (ITI TF-2b 3.62.4.1.3 and the NIST tests 30000-30008):

* an id that is not a registry object of the VIHF's patient: ``UnresolvedReferenceException``.
  Another patient's objects are unknown here, exactly as Get* queries leave them out, so that
  the answer is no oracle over other records;
* an object that an Association *not* being removed still points at (as source or target):
  ``ReferencesExistException``. The caller must list the associations too, so nothing dangles
  (an RPLC to a removed original, a folder membership of a removed document, ...);
* a DocumentEntry whose document is not deleted in the DMP (:func:`.purgeable`: its latest
  version must be Deleted, by an ITI-57 status update the rights matrix allowed):
  ``XDSRegistryError``, the code IHE reserves for conditions no more detailed code describes.
  ITI-62 erases for good; what has not been deleted first is not erased by mistake;
* a removal that would leave the metadata model broken on the *remaining* side:
  ``XDSUnreferencedObjectException``. Two cases: a SubmissionSet that keeps no association at
  all (it would describe a submission of nothing: NIST 30001, 30002, 30003 expect this code
  when a document and its HasMember go but their SubmissionSet stays), and a DocumentEntry,
  Folder or Association that loses its HasMember from a SubmissionSet and has no other one
  (every object must have arrived in some submission). Only links this request removes are
  judged: the state an object was already in is not the caller's doing.

Why ``XDSUnreferencedObjectException`` and not ``ReferencesExistException`` when only a
document and its HasMember are removed: nothing remaining *references* a removed object there,
so ReferencesExist would be false; what breaks is that the remaining SubmissionSet references
nothing, which is what the unreferenced-object code says (and what NIST 30001 expects).

Statuses are not touched: removing an RPLC association and its replacement leaves the original
Deprecated, as ITI-62 removes objects and changes nothing else. A removed object's uniqueId is
freed once no row with it remains (ITI-57 versions of a DocumentEntry share theirs). The
removed entries' content keys are returned (:attr:`Removed.content_keys`) so that, once the
removal has committed, the caller deletes the bytes no other entry references
(repository/maintenance.py re-checks the registry under the content lock).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lxml import etree
from sqlalchemy import Column, ColumnElement, Connection, and_, delete, or_, select

from ..errors import ErrorCode, XdsError, XdsFailure
from ..metadata import vocabulary as v
from ..metadata.datatypes import PatientId, is_uuid_urn
from ..namespaces import QUERY, RIM
from ..policy.purge import purgeable
from . import patient_lock
from . import tables as t
from .queries import patient_key
from .register import as_urn, as_uuid

DELETE_ALL = "urn:oasis:names:tc:ebxml-regrep:DeletionScopeType:DeleteAll"
_SHOWN = 5  # associations named in one ReferencesExistException message


def _request_error(message: str, location: str = "RemoveObjectsRequest") -> XdsError:
    return XdsError(ErrorCode.REGISTRY_ERROR, message, location)


def read_remove_request(payload: etree._Element) -> tuple[list[str], list[XdsError]]:
    """The ids of a schema-valid ``lcm:RemoveObjectsRequest`` (first occurrence order, each
    once) and what makes the request unusable for ITI-62.

    ITI-62 names objects; the ebRS alternatives are refused with a reason a client can act on:
    a query selecting the objects (``AdhocQuery``: the registry would decide what is erased),
    and a ``deletionScope`` other than the default (``DeleteRepositoryItemOnly`` is about
    document bytes, which the registry does not hold: that is ITI-86's business).
    """
    errors: list[XdsError] = []
    if (
        payload.find(f"{{{RIM}}}AdhocQuery") is not None
        or payload.find(f"{{{QUERY}}}AdhocQuery") is not None
    ):
        errors.append(
            _request_error(
                "ITI-62 removes the objects named in an ObjectRefList; selecting them with an "
                "AdhocQuery is not supported",
                "RemoveObjectsRequest / AdhocQuery",
            )
        )
    scope = payload.get("deletionScope")
    if scope is not None and scope != DELETE_ALL:
        errors.append(
            _request_error(
                f"deletionScope {scope!r} is not supported: ITI-62 removes metadata "
                "(leave deletionScope out)",
                "RemoveObjectsRequest / deletionScope",
            )
        )
    ref_list = payload.find(f"{{{RIM}}}ObjectRefList")
    if ref_list is None:
        errors.append(
            _request_error(
                "no ObjectRefList: name the objects to remove by entryUUID",
                "RemoveObjectsRequest / ObjectRefList",
            )
        )
        return [], errors
    ids = list(dict.fromkeys(ref.get("id", "") for ref in ref_list.iter(f"{{{RIM}}}ObjectRef")))
    if not ids:
        errors.append(
            _request_error(
                "the ObjectRefList is empty: nothing to remove",
                "RemoveObjectsRequest / ObjectRefList",
            )
        )
    return ids, errors


@dataclass
class Removed:
    """What a successful removal erased (for the audit trail and the log line)."""

    entry_uuids: list[str] = field(default_factory=list)
    document_unique_ids: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    content_keys: set[str] = field(default_factory=set)  # of the removed DocumentEntries


@dataclass(frozen=True, slots=True)
class _Link:
    entry_uuid: uuid.UUID
    association_type: str
    source: uuid.UUID
    target: uuid.UUID

    @property
    def label(self) -> str:
        return f"{_short_type(self.association_type)} {as_urn(self.entry_uuid)}"


def _short_type(association_type: str) -> str:
    return association_type.rsplit(":", 1)[-1]


def remove_objects(conn: Connection, patient: PatientId | None, ids: Sequence[str]) -> Removed:
    """Check and erase the objects ``ids`` of ``patient``'s record in ``conn``'s transaction.

    Raises :class:`XdsFailure` with every problem found; nothing is written then.
    """
    errors: list[XdsError] = []
    wanted: dict[uuid.UUID, str] = {}
    for ref in ids:
        if is_uuid_urn(ref):
            wanted.setdefault(as_uuid(ref), ref)
        else:
            errors.append(_unresolved(ref, "is not an entryUUID (urn:uuid:...)"))
    key = patient_key(conn, patient.canonical) if patient is not None else None
    kinds: dict[uuid.UUID, str] = {}
    if key is not None and wanted:
        # Before reading anything: submissions of this record in flight finish first.
        patient_lock.hold_for_removal(conn, key)
        loc = t.object_locator
        kinds = dict(
            conn.execute(
                select(loc.c.entry_uuid, loc.c.kind).where(
                    loc.c.patient_key == key, loc.c.entry_uuid.in_(list(wanted))
                )
            ).all()
        )
    errors += [
        _unresolved(ref, "is not a registry object of this patient")
        for entry, ref in wanted.items()
        if entry not in kinds
    ]
    if kinds:
        assert key is not None
        errors += _not_deleted(
            conn, key, [e for e, kind in kinds.items() if kind == "DocumentEntry"]
        )
        errors += _references_kept(conn, key, kinds)
        errors += _left_unreferenced(conn, key, kinds)
    if errors:
        raise XdsFailure(errors)
    return _erase(conn, key, kinds) if key is not None else Removed()


def with_dependents(
    conn: Connection, key: int, kinds: dict[uuid.UUID, str]
) -> dict[uuid.UUID, str]:
    """``kinds`` (entryUUID -> kind) plus everything that must go with them for
    :func:`remove_objects` to accept the removal: every association touching a removed object
    (its HasMember, RPLC, folder memberships, status updates, and in turn the associations to
    those), and every SubmissionSet that would be left with no association.

    Used by ``dmp-xds purge`` (registry/purge.py), which names a document and lets the registry
    work out the rest; ITI-62 callers name every object themselves.
    """
    a = t.association
    result = dict(kinds)
    while True:
        wanted = list(result)
        links = _links(conn, key, or_(a.c.source_uuid.in_(wanted), a.c.target_uuid.in_(wanted)))
        added = {link.entry_uuid: "Association" for link in links if link.entry_uuid not in result}
        sources = _kinds(conn, key, {link.source for link in links} - set(result))
        sets = sorted((e for e, k in sources.items() if k == "SubmissionSet"), key=str)
        emptied = _without_remaining(conn, key, sets, {**result, **added}, a.c.source_uuid)
        added.update(dict.fromkeys(emptied, "SubmissionSet"))
        if not added:
            return result
        result.update(added)


def _unresolved(ref: str, why: str) -> XdsError:
    return XdsError(ErrorCode.UNRESOLVED_REFERENCE, f"{ref} {why}", ref)


def _not_deleted(conn: Connection, key: int, entries: list[uuid.UUID]) -> list[XdsError]:
    """XDSRegistryError for each DocumentEntry whose document is not deleted (all the versions
    of its logical document decide, :func:`.purgeable`)."""
    if not entries:
        return []
    de = t.document_entry
    logical = dict(
        conn.execute(
            select(de.c.entry_uuid, de.c.logical_id).where(
                de.c.patient_key == key, de.c.entry_uuid.in_(entries)
            )
        ).all()
    )
    versions: dict[uuid.UUID, list[tuple[int, str]]] = defaultdict(list)
    for lid, version, status in conn.execute(
        select(de.c.logical_id, de.c.version, de.c.status).where(
            de.c.patient_key == key, de.c.logical_id.in_(set(logical.values()))
        )
    ):
        versions[lid].append((version, status))
    errors = []
    for entry in sorted(entries, key=str):
        decision = purgeable(versions[logical[entry]])
        if not decision:
            errors.append(
                XdsError(
                    ErrorCode.REGISTRY_ERROR,
                    f"DocumentEntry {as_urn(entry)} cannot be removed: {decision.reason}",
                    as_urn(entry),
                )
            )
    return errors


def _links(conn: Connection, key: int, condition: ColumnElement[bool]) -> list[_Link]:
    a = t.association
    rows = conn.execute(
        select(a.c.entry_uuid, a.c.association_type, a.c.source_uuid, a.c.target_uuid).where(
            a.c.patient_key == key, condition
        )
    ).all()
    return [_Link(*row) for row in rows]


def _references_kept(conn: Connection, key: int, kinds: dict[uuid.UUID, str]) -> list[XdsError]:
    """ReferencesExistException for each object that a remaining association points at."""
    a = t.association
    removing = list(kinds)
    keeping: dict[uuid.UUID, list[_Link]] = defaultdict(list)
    for link in _links(
        conn, key, or_(a.c.source_uuid.in_(removing), a.c.target_uuid.in_(removing))
    ):
        if link.entry_uuid in kinds:
            continue
        for end in dict.fromkeys((link.source, link.target)):
            if end in kinds:
                keeping[end].append(link)
    errors = []
    for entry, links in keeping.items():
        links.sort(key=lambda link: str(link.entry_uuid))
        named = ", ".join(link.label for link in links[:_SHOWN])
        more = f" and {len(links) - _SHOWN} more" if len(links) > _SHOWN else ""
        errors.append(
            XdsError(
                ErrorCode.REFERENCES_EXIST,
                f"{kinds[entry]} {as_urn(entry)} is referenced by associations this request "
                f"does not remove: {named}{more}",
                as_urn(entry),
            )
        )
    return errors


def _left_unreferenced(conn: Connection, key: int, kinds: dict[uuid.UUID, str]) -> list[XdsError]:
    """XDSUnreferencedObjectException for remaining objects this removal cuts loose."""
    removed_links = _links(
        conn,
        key,
        t.association.c.entry_uuid.in_([e for e, k in kinds.items() if k == "Association"]),
    )
    if not removed_links:
        return []
    source_kinds = _kinds(conn, key, {link.source for link in removed_links} - set(kinds))
    source_kinds.update(kinds)
    errors = []
    # A SubmissionSet that stays must keep at least one association of its own.
    losing = sorted(
        {
            link.source
            for link in removed_links
            if link.source not in kinds and source_kinds.get(link.source) == "SubmissionSet"
        },
        key=str,
    )
    for ss in _without_remaining(conn, key, losing, kinds, t.association.c.source_uuid):
        errors.append(
            XdsError(
                ErrorCode.UNREFERENCED_OBJECT,
                f"SubmissionSet {as_urn(ss)} would be left without any member: remove it too, "
                "or keep one of its associations",
                as_urn(ss),
            )
        )
    # An object that stays must keep a HasMember from some SubmissionSet, if it loses one.
    orphans = sorted(
        {
            link.target
            for link in removed_links
            if link.association_type == v.HAS_MEMBER
            and source_kinds.get(link.source) == "SubmissionSet"
            and link.target not in kinds
        },
        key=str,
    )
    members = _without_remaining(
        conn, key, orphans, kinds, t.association.c.target_uuid, from_submission_set=True
    )
    if members:
        target_kinds = _kinds(conn, key, set(members))
        for entry in members:
            errors.append(
                XdsError(
                    ErrorCode.UNREFERENCED_OBJECT,
                    f"{target_kinds.get(entry, 'object')} {as_urn(entry)} would no longer "
                    "belong to any SubmissionSet: remove it too, or keep its HasMember",
                    as_urn(entry),
                )
            )
    return errors


def _kinds(conn: Connection, key: int, entries: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    wanted = list(entries)
    if not wanted:
        return {}
    loc = t.object_locator
    return dict(
        conn.execute(
            select(loc.c.entry_uuid, loc.c.kind).where(
                loc.c.patient_key == key, loc.c.entry_uuid.in_(wanted)
            )
        ).all()
    )


def _without_remaining(
    conn: Connection,
    key: int,
    candidates: list[uuid.UUID],
    kinds: dict[uuid.UUID, str],
    end: Column,  # the association column the candidates sit at
    *,
    from_submission_set: bool = False,
) -> list[uuid.UUID]:
    """The candidates with no association left at ``end`` once ``kinds`` are removed (with
    ``from_submission_set``: no HasMember left from a SubmissionSet)."""
    if not candidates:
        return []
    a, loc = t.association, t.object_locator
    query = select(end).where(
        a.c.patient_key == key,
        end.in_(candidates),
        a.c.entry_uuid.not_in(list(kinds)),
    )
    if from_submission_set:
        query = query.join(
            loc,
            and_(loc.c.entry_uuid == a.c.source_uuid, loc.c.kind == "SubmissionSet"),
        ).where(a.c.association_type == v.HAS_MEMBER, a.c.source_uuid.not_in(list(kinds)))
    kept = set(conn.execute(query.group_by(end)).scalars())
    return [c for c in candidates if c not in kept]


def _erase(conn: Connection, key: int, kinds: dict[uuid.UUID, str]) -> Removed:
    """Delete the rows of a checked removal and free the uniqueIds no row uses any more."""
    removed = Removed(entry_uuids=[as_urn(e) for e in kinds])
    by_kind: dict[str, list[uuid.UUID]] = defaultdict(list)
    for entry, kind in kinds.items():
        by_kind[kind].append(entry)
    for kind, entries in by_kind.items():
        table = t.KIND_TABLES[kind]
        where = and_(table.c.patient_key == key, table.c.entry_uuid.in_(entries))
        unique_ids: set[str] = set()
        if "unique_id" in table.c:
            unique_ids = set(conn.execute(select(table.c.unique_id).where(where)).scalars())
        if kind == "DocumentEntry":
            removed.content_keys = set(
                conn.execute(select(table.c.content_sha256).where(where)).scalars()
            ) - {None}
        conn.execute(delete(table).where(where))
        removed.counts[kind] = len(entries)
        if kind == "DocumentEntry":
            removed.document_unique_ids = sorted(unique_ids)
        _free_unique_ids(conn, key, kind, unique_ids)
    loc = t.object_locator
    conn.execute(delete(loc).where(loc.c.patient_key == key, loc.c.entry_uuid.in_(list(kinds))))
    return removed


def _free_unique_ids(conn: Connection, key: int, kind: str, unique_ids: set[str]) -> None:
    """Drop the uniqueId locator rows that no remaining row of ``kind`` uses (the versions of
    a DocumentEntry share one uniqueId: it stays taken while one version remains)."""
    if not unique_ids:
        return
    table = t.KIND_TABLES[kind]
    still_used = set(
        conn.execute(
            select(table.c.unique_id)
            .where(table.c.patient_key == key, table.c.unique_id.in_(list(unique_ids)))
            .group_by(table.c.unique_id)
        ).scalars()
    )
    free = unique_ids - still_used
    if free:
        u = t.unique_id_locator
        conn.execute(
            delete(u).where(u.c.kind == kind, u.c.patient_key == key, u.c.unique_id.in_(list(free)))
        )
