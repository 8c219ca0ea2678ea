"""ITI-42 Register Document Set-b: store a validated submission in one transaction.

The caller (ITI-41 or ITI-42 endpoint) has parsed and validated the metadata; here come the
checks that need the registry's state (patient known, uniqueIds unused, association targets
present, of the same patient and not deprecated), then every row is written in the caller's
transaction. Any failure raises :class:`XdsFailure`, and the caller's rollback leaves the registry
as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree
from sqlalchemy import Connection, Table, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError

from ..errors import ErrorCode, XdsError, XdsFailure
from ..metadata import vocabulary as v
from ..metadata.datatypes import dtm_key, is_uuid_urn, parse_patient_id
from ..metadata.ebrim import rim, set_slot
from ..metadata.model import Association, DocumentEntry, Folder, Submission, SubmissionSet
from . import patient_lock
from . import tables as t
from .database import Precompiled, insert_rows
from .queries import any_of, document_facts, patient_key


def as_uuid(entry_uuid: str) -> uuid.UUID:
    return uuid.UUID(entry_uuid.removeprefix("urn:uuid:"))


def as_urn(value: uuid.UUID) -> str:
    return f"urn:uuid:{value}"


def fragment(element: etree._Element) -> str:
    """The stored LeafClass form of an object: its element without status (set when answered).

    ASCII, other characters written as character references (``&#233;``): the same XML, and a
    LeafClass answer splices fragments into UTF-8 bytes at memory speed. Encoding French text
    (a fragment with one accented name) is a character-by-character conversion instead: 0.27 ms
    for a 50-document FindDocuments answer (263 KB), against 0.02 ms for ASCII."""
    status = element.attrib.pop("status", None)
    try:
        return etree.tostring(element, encoding="us-ascii").decode("ascii")
    finally:
        if status is not None:
            element.set("status", status)


def create_patient(conn: Connection, patient_id: str) -> tuple[int, bool]:
    """Register a patient id (idempotent); return its key and whether it was new."""
    canonical = parse_patient_id(patient_id).canonical
    key = conn.execute(
        pg_insert(t.patient)
        .values(patient_id=canonical)
        .on_conflict_do_nothing(index_elements=["patient_id"])
        .returning(t.patient.c.patient_key)
    ).scalar_one_or_none()
    if key is not None:
        return key, True
    return patient_key(conn, canonical), False  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Existing:
    kind: str
    status: str | None


@dataclass
class Checked:
    """A submission that passed the registry's checks, ready to be written."""

    sub: Submission
    patient_key: int
    existing: dict[str, Existing]


def submission_patient_key(
    conn: Connection, sub: Submission, errors: list[XdsError], known: int | None = None
) -> int | None:
    """The registry key of the SubmissionSet's patient; XDSUnknownPatientId added to
    ``errors`` when the registry does not know it (a malformed id is validation's to report).

    ``known``: the key the record gate already read for the VIHF's patient, which the
    submission must name (policy/patient.py reports it otherwise), so it is not looked up again.
    """
    ss = sub.submission_sets[0] if sub.submission_sets else None
    if ss is None or not ss.patient_id:
        return None
    try:
        key = known if known is not None else patient_key(conn, ss.patient_id)
    except ValueError:
        return None
    if key is None:
        errors.append(
            XdsError(
                ErrorCode.UNKNOWN_PATIENT_ID,
                f"patient {parse_patient_id(ss.patient_id)} is not known to the registry",
                f"{ss.label} / patientId",
            )
        )
    return key


@dataclass(frozen=True, slots=True)
class Taken:
    """What of a submission the registry holds already: (kind, uniqueId, patient key) of its
    uniqueIds, and its entryUUIDs."""

    unique_ids: list[tuple[str, str, int]]
    uuids: list[uuid.UUID]


def read_taken(
    conn: Connection, key: int | None, sub: Submission, unique: Submission | None = None
) -> Taken:
    """The first read of a submission's checks: which uniqueIds (of ``unique``'s objects,
    ``sub``'s by default) and entryUUIDs (of ``sub``'s) are taken, in one round trip with the
    patient's shared hold when the patient is known (before any check reads the record, so a
    concurrent ITI-62 removal waits: patient_lock)."""
    wanted = list(_by_unique_id(unique or sub))
    params = {
        "kinds": [kind for kind, _ in wanted],
        "ids": [unique_id for _, unique_id in wanted],
        "uuids": [as_uuid(o.id) for o in sub.objects() if is_uuid_urn(o.id)],
    }
    if key is None:
        rows = conn.execute(_TAKEN, params).all()
    else:
        rows = patient_lock.hold_for_write(conn, key, _TAKEN, params).all()
    return Taken(
        [(r.kind, r.unique_id, r.patient_key) for r in rows if r.kind is not None],
        [r.entry_uuid for r in rows if r.kind is None],
    )


# By (kind, uniqueId) pairs, the locator's key (a uniqueId alone would scan the whole table),
# and by entryUUID, in one statement built once whatever the submission's size.
_TAKEN = text(
    "SELECT l.kind, l.unique_id, l.patient_key, NULL::uuid AS entry_uuid"
    " FROM unique_id_locator l"
    " JOIN unnest(CAST(:kinds AS text[]), CAST(:ids AS text[])) AS w(kind, unique_id)"
    " ON l.kind = w.kind AND l.unique_id = w.unique_id"
    " UNION ALL SELECT NULL, NULL, NULL, o.entry_uuid FROM object_locator o"
    " WHERE o.entry_uuid = ANY(CAST(:uuids AS uuid[]))"
)


def check(
    conn: Connection,
    sub: Submission,
    prior_errors: Sequence[XdsError] = (),
    *,
    patient_key: int | None = None,
    hidden: Callable[[Any], bool] | None = None,
) -> Checked:
    """The checks that need the registry's state, added to ``prior_errors`` (the metadata
    validation's), so that a submitter gets every problem in one answer. ``patient_key``: the
    VIHF patient's, when the record gate has read it (see :func:`submission_patient_key`);
    ``hidden``: the documents the caller cannot find, which its associations (a replacement,
    a transform, an addendum, a folder membership) may not name (see :func:`check_references`).

    Raises :class:`XdsFailure` when anything is wrong.
    """
    errors = list(prior_errors)
    key = submission_patient_key(conn, sub, errors, patient_key)
    taken = read_taken(conn, key, sub)
    errors += check_unique_ids(conn, sub, taken)
    existing = check_references(conn, sub, key, errors, taken, hidden)
    if errors or key is None:
        raise XdsFailure(errors)
    return Checked(sub, key, existing)


def write(
    conn: Connection, checked: Checked, content_keys: Mapping[str, str] | None = None
) -> None:
    """Write a checked submission inside ``conn``'s transaction.

    ``content_keys`` maps DocumentEntry ids to the SHA-256 of their bytes in the document store
    (ITI-41); ITI-42 registrations have none.
    """
    sub, key = checked.sub, checked.patient_key
    ss = sub.submission_sets[0]
    submission_time = ss.submission_time or ""
    for assoc in sub.associations:
        assoc.element.set("status", v.APPROVED)
    keys = content_keys or {}
    try:
        # Every table in one round trip, whatever the batch size (an EAI pushes thousands).
        insert_rows(
            conn,
            (t.submission_set, [submission_set_row(key, ss)]),
            (t.document_entry, [document_row(key, d, keys.get(d.id)) for d in sub.documents]),
            (t.folder, [folder_row(key, f, submission_time) for f in sub.folders]),
            (t.association, [association_row(key, a) for a in sub.associations]),
            *locator_rows(key, sub),
        )
    except IntegrityError as exc:
        # A concurrent submission took a uniqueId or entryUUID between our check and insert.
        raise XdsFailure(
            XdsError(
                ErrorCode.DUPLICATE_UNIQUE_ID_IN_REGISTRY,
                "a uniqueId or entryUUID of this submission was registered concurrently",
                ss.label,
            )
        ) from exc
    _apply_relationships(conn, key, sub)
    _touch_folders(conn, key, sub, checked.existing, submission_time)


def register(
    conn: Connection,
    sub: Submission,
    prior_errors: Sequence[XdsError] = (),
    *,
    patient_key: int | None = None,
    hidden: Callable[[Any], bool] | None = None,
) -> None:
    """ITI-42: check and write in the caller's transaction."""
    write(conn, check(conn, sub, prior_errors, patient_key=patient_key, hidden=hidden))


def _by_unique_id(sub: Submission) -> dict[tuple[str, str], Any]:
    """The submission's objects that carry a uniqueId, by (kind, uniqueId)."""
    return {
        (type(o).__name__, o.unique_id): o
        for o in (*sub.documents, *sub.submission_sets, *sub.folders)
        if o.unique_id
    }


def check_unique_ids(conn: Connection, sub: Submission, taken: Taken) -> list[XdsError]:
    wanted = _by_unique_id(sub)
    errors: list[XdsError] = []
    for kind, unique_id, pkey in taken.unique_ids:
        obj = wanted.get((kind, unique_id))
        if obj is None:
            continue
        if isinstance(obj, DocumentEntry):
            errors += _document_duplicate(conn, obj, pkey)
        else:
            errors.append(
                XdsError(
                    ErrorCode.DUPLICATE_UNIQUE_ID_IN_REGISTRY,
                    f"{kind} uniqueId {unique_id} is already in the registry",
                    f"{obj.label} / uniqueId",
                )
            )
    return errors


def _document_duplicate(conn: Connection, doc: DocumentEntry, pkey: int) -> list[XdsError]:
    """A DocumentEntry uniqueId already registered: tell the submitter how it differs."""
    de = t.document_entry
    row = conn.execute(
        select(de.c.hash_sha1, de.c.size)
        .where(de.c.patient_key == pkey, de.c.unique_id == doc.unique_id)
        .limit(1)
    ).one_or_none()
    where = f"{doc.label} / uniqueId"
    if row is not None and doc.hash and row.hash_sha1 and doc.hash.lower() != row.hash_sha1:
        return [
            XdsError(
                ErrorCode.NON_IDENTICAL_HASH,
                f"document uniqueId {doc.unique_id} is already registered with another hash",
                where,
            )
        ]
    if row is not None and doc.size and row.size is not None and int(doc.size) != row.size:
        return [
            XdsError(
                ErrorCode.NON_IDENTICAL_SIZE,
                f"document uniqueId {doc.unique_id} is already registered with another size",
                where,
            )
        ]
    return [
        XdsError(
            ErrorCode.DUPLICATE_UNIQUE_ID_IN_REGISTRY,
            f"document uniqueId {doc.unique_id} is already in the registry",
            where,
        )
    ]


def check_references(
    conn: Connection,
    sub: Submission,
    key: int | None,
    errors: list[XdsError],
    taken: Taken,
    hidden: Callable[[Any], bool] | None = None,
) -> dict[str, Existing]:
    """Resolve association ends that are not in the submission; report the unusable ones.

    ``hidden`` (the access gate's) says which of the patient's DocumentEntries, by their
    :data:`.queries.DOCUMENT_FACT_COLUMNS` row, the caller cannot find: those are reported
    exactly as ids that are not in the registry, so that naming a document (to replace it,
    say, which deprecates it) neither reaches nor reveals one the caller could not see."""
    local = {o.id for o in sub.objects()}
    for entry in taken.uuids:
        errors.append(
            XdsError(
                ErrorCode.REGISTRY_METADATA,
                f"entryUUID {as_urn(entry)} is already in the registry",
                as_urn(entry),
            )
        )
    refs = {
        ref
        for a in sub.associations
        for ref in (a.source, a.target)
        if ref not in local and is_uuid_urn(ref)  # other refs: reported by validation
    }
    existing: dict[str, Existing] = {}
    if refs:
        rows = _LOCATED.execute(conn, {"ids": [as_uuid(r) for r in refs]}).all()
        if hidden is not None and key is not None:
            documents = document_facts(
                conn, key, [e for e, pkey, kind in rows if kind == "DocumentEntry" and pkey == key]
            )
            rows = [r for r in rows if r[0] not in documents or not hidden(documents[r[0]])]
        for entry, pkey, kind in rows:
            urn = as_urn(entry)
            if key is not None and pkey != key:
                errors.append(
                    XdsError(
                        ErrorCode.PATIENT_ID_DOES_NOT_MATCH,
                        f"{kind} {urn} belongs to another patient than this submission",
                        urn,
                    )
                )
            status = None
            if kind in ("DocumentEntry", "Folder"):
                table = t.KIND_TABLES[kind]
                status = conn.execute(
                    select(table.c.status).where(
                        table.c.patient_key == pkey, table.c.entry_uuid == entry
                    )
                ).scalar_one_or_none()
            existing[urn] = Existing(kind, status)
    for assoc in sub.associations:
        for ref in (assoc.source, assoc.target):
            if ref in refs and ref not in existing:
                errors.append(
                    XdsError(
                        ErrorCode.UNRESOLVED_REFERENCE,
                        f"{ref} is neither in this submission nor in the registry",
                        f"{assoc.label}",
                    )
                )
        if assoc.type in v.RELATIONSHIP_TYPES:
            target = existing.get(assoc.target)
            if assoc.target in local or target is None:
                if assoc.target in local and assoc.type != v.SIGNS:
                    errors.append(
                        XdsError(
                            ErrorCode.REGISTRY_METADATA,
                            "the target of a document relationship must be a registered "
                            "DocumentEntry",
                            f"{assoc.label} / targetObject",
                        )
                    )
                continue
            if target.kind != "DocumentEntry":
                errors.append(
                    XdsError(
                        ErrorCode.REGISTRY_METADATA,
                        f"{assoc.target} is a {target.kind}, not a DocumentEntry",
                        f"{assoc.label} / targetObject",
                    )
                )
            elif target.status != v.APPROVED:
                errors.append(
                    XdsError(
                        ErrorCode.DEPRECATED_DOCUMENT,
                        f"document {assoc.target} is deprecated and cannot be the target "
                        "of a new relationship",
                        f"{assoc.label} / targetObject",
                    )
                )
    return existing


# Built once, the statements of every submission.
_LOCATED = Precompiled(
    select(
        t.object_locator.c.entry_uuid, t.object_locator.c.patient_key, t.object_locator.c.kind
    ).where(any_of(t.object_locator.c.entry_uuid, "ids"))
)


def _codes(codes: list) -> list[str]:
    return [c.key for c in codes]


def submission_set_row(key: int, ss: SubmissionSet) -> dict[str, object]:
    return {
        "patient_key": key,
        "entry_uuid": as_uuid(ss.id),
        "unique_id": ss.unique_id,
        "source_id": ss.source_id,
        "status": v.APPROVED,
        "submission_time": dtm_key(ss.submission_time or ""),
        "content_type_code": ss.content_type_code.key if ss.content_type_code else None,
        "author_persons": [a.person for a in ss.authors if a.person],
        "ebrim": fragment(ss.element),
    }


def document_row(
    key: int,
    doc: DocumentEntry,
    content_sha256: str | None,
    version: int = 1,
    status: str = v.APPROVED,
) -> dict[str, object]:
    """The document_entry values of ``doc`` (and its stored fragment, numbered)."""
    lid = doc.lid or doc.id
    doc.element.set("lid", lid)
    set_version_info(doc.element, version)
    return dict(
        patient_key=key,
        entry_uuid=as_uuid(doc.id),
        logical_id=as_uuid(lid),
        version=version,
        unique_id=doc.unique_id,
        status=status,
        object_type=doc.object_type,
        mime_type=doc.mime_type,
        class_code=doc.class_code.key if doc.class_code else None,
        type_code=doc.type_code.key if doc.type_code else None,
        format_code=doc.format_code.key if doc.format_code else None,
        facility_code=doc.facility_code.key if doc.facility_code else None,
        practice_code=doc.practice_code.key if doc.practice_code else None,
        confidentiality_codes=_codes(doc.confidentiality_codes),
        event_codes=_codes(doc.event_codes),
        author_persons=[a.person for a in doc.authors if a.person],
        creation_time=dtm_key(doc.creation_time) if doc.creation_time else None,
        service_start_time=dtm_key(doc.service_start_time) if doc.service_start_time else None,
        service_stop_time=dtm_key(doc.service_stop_time) if doc.service_stop_time else None,
        hash_sha1=doc.hash.lower() if doc.hash else None,
        size=int(doc.size) if doc.size else None,
        repository_unique_id=doc.repository_unique_id,
        content_sha256=content_sha256,
        reference_ids=doc.reference_ids,
        availability=doc.availability,
        ebrim=fragment(doc.element),
    )


def folder_row(key: int, fol: Folder, submission_time: str) -> dict[str, object]:
    lid = fol.lid or fol.id
    fol.element.set("lid", lid)
    set_slot(fol.element, "lastUpdateTime", [submission_time])
    return {
        "patient_key": key,
        "entry_uuid": as_uuid(fol.id),
        "logical_id": as_uuid(lid),
        "version": 1,
        "unique_id": fol.unique_id,
        "status": v.APPROVED,
        "codes": _codes(fol.codes),
        "last_update_time": dtm_key(submission_time),
        "ebrim": fragment(fol.element),
    }


def association_row(key: int, assoc: Association) -> dict[str, object]:
    return {
        "patient_key": key,
        "entry_uuid": as_uuid(assoc.id),
        "association_type": assoc.type,
        "source_uuid": as_uuid(assoc.source),
        "target_uuid": as_uuid(assoc.target),
        "status": v.APPROVED,
        "ebrim": fragment(assoc.element),
    }


def locator_rows(
    key: int, sub: Submission, *, new_unique_ids: bool = True
) -> list[tuple[Table, list[dict[str, object]]]]:
    """Locator rows for every object; uniqueIds only for new objects (an ITI-57 version
    shares its uniqueId with the versions before it)."""
    owners = (*sub.submission_sets, *sub.documents, *sub.folders) if new_unique_ids else ()
    return [
        (
            t.object_locator,
            [
                {"entry_uuid": as_uuid(o.id), "patient_key": key, "kind": type(o).__name__}
                for o in sub.objects()
            ],
        ),
        (
            t.unique_id_locator,
            [
                {"kind": type(o).__name__, "unique_id": o.unique_id, "patient_key": key}
                for o in owners
            ],
        ),
    ]


def _apply_relationships(conn: Connection, key: int, sub: Submission) -> None:
    """Deprecate what RPLC / XFRM_RPLC replace; exactly one concurrent replacement wins."""
    de = t.document_entry
    for assoc in sub.associations:
        if assoc.type not in v.REPLACEMENT_TYPES:
            continue
        done = conn.execute(
            update(de)
            .where(
                de.c.patient_key == key,
                de.c.entry_uuid == as_uuid(assoc.target),
                de.c.status == v.APPROVED,
            )
            .values(status=v.DEPRECATED)
        ).rowcount
        if done != 1:
            raise XdsFailure(
                XdsError(
                    ErrorCode.DEPRECATED_DOCUMENT,
                    f"document {assoc.target} was replaced concurrently",
                    f"{assoc.label} / targetObject",
                )
            )
        folders = _carry_folder_membership(conn, key, assoc)
        _set_last_update(conn, key, folders, sub.submission_sets[0].submission_time or "")


def _carry_folder_membership(conn: Connection, key: int, assoc: Association) -> list[str]:
    """A replacement joins every folder the original belonged to (ITI TF-3 4.2.2.2.3)."""
    a = t.association
    folders = (
        conn.execute(
            select(a.c.source_uuid)
            .join(
                t.object_locator,
                (t.object_locator.c.entry_uuid == a.c.source_uuid)
                & (t.object_locator.c.kind == "Folder"),
            )
            .where(
                a.c.patient_key == key,
                a.c.target_uuid == as_uuid(assoc.target),
                a.c.association_type == v.HAS_MEMBER,
            )
        )
        .scalars()
        .all()
    )
    for folder_uuid in folders:
        new_id = f"urn:uuid:{uuid.uuid4()}"
        element = etree.Element(
            rim("Association"),
            id=new_id,
            associationType=v.HAS_MEMBER,
            sourceObject=as_urn(folder_uuid),
            targetObject=assoc.source,
            objectType=v.ASSOCIATION_TYPE,
            status=v.APPROVED,
        )
        conn.execute(
            t.association.insert().values(
                patient_key=key,
                entry_uuid=as_uuid(new_id),
                association_type=v.HAS_MEMBER,
                source_uuid=folder_uuid,
                target_uuid=as_uuid(assoc.source),
                status=v.APPROVED,
                ebrim=fragment(element),
            )
        )
        conn.execute(
            t.object_locator.insert().values(
                entry_uuid=as_uuid(new_id), patient_key=key, kind="Association"
            )
        )
    return [as_urn(f) for f in folders]


def _touch_folders(
    conn: Connection,
    key: int,
    sub: Submission,
    existing: Mapping[str, Existing],
    submission_time: str,
) -> None:
    """Existing folders that receive documents get a new lastUpdateTime."""
    touched = [
        a.source
        for a in sub.associations
        if a.type == v.HAS_MEMBER and existing.get(a.source, Existing("", None)).kind == "Folder"
    ]
    _set_last_update(conn, key, touched, submission_time)


def _set_last_update(
    conn: Connection, key: int, folder_urns: Sequence[str], submission_time: str
) -> None:
    f = t.folder
    for folder_urn in dict.fromkeys(folder_urns):
        row = conn.execute(
            select(f.c.ebrim).where(f.c.patient_key == key, f.c.entry_uuid == as_uuid(folder_urn))
        ).one()
        element = etree.fromstring(row.ebrim)
        set_slot(element, "lastUpdateTime", [submission_time])
        conn.execute(
            update(f)
            .where(f.c.patient_key == key, f.c.entry_uuid == as_uuid(folder_urn))
            .values(last_update_time=dtm_key(submission_time), ebrim=fragment(element))
        )


def set_version_info(element: etree._Element, version: int) -> None:
    """The registry numbers versions (1 for a new entry; the DMP answers it too).
    VersionInfo comes after Name/Description and before Classifications (ebRIM order)."""
    for old in element.findall(rim("VersionInfo")):
        element.remove(old)
    info = etree.Element(rim("VersionInfo"), versionName=str(version))
    anchor = element.find(rim("Classification"))
    if anchor is None:
        anchor = element.find(rim("ExternalIdentifier"))
    if anchor is not None:
        anchor.addprevious(info)
    else:
        element.append(info)
