"""ITI-57 Update Document Set: new versions of DocumentEntries and availability-status changes.

Two operations, as the DMP uses them (masking is a new version with other confidentiality
codes; archiving and deletion are status updates):

* **Metadata update**: a DocumentEntry whose ``lid`` names a registered logical id, linked from
  the SubmissionSet by HasMember with ``SubmissionSetStatus=Original`` and ``PreviousVersion``
  equal to the latest version. The new version gets a new entryUUID, the same uniqueId, hash
  and size, version + 1 and the latest version's status; the latest version becomes Deprecated.
  Exactly one of two concurrent updates of one version wins.
* **UpdateAvailabilityStatus**: an association from the SubmissionSet to a registered
  DocumentEntry or Folder with ``OriginalStatus`` (its current status) and ``NewStatus``.

Everything else in the request (new associations between registered objects) is registered as
ITI-42 would. All errors are reported at once; nothing is written unless everything holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Row, select, update

from ..errors import ErrorCode, XdsError, XdsFailure
from ..metadata import vocabulary as v
from ..metadata.ebrim import slot_values
from ..metadata.model import Association, DocumentEntry, Submission
from . import tables as t
from .database import insert_rows
from .queries import DOCUMENT_FACT_COLUMNS, document_facts
from .register import (
    Existing,
    as_uuid,
    association_row,
    check_references,
    check_unique_ids,
    document_row,
    locator_rows,
    read_taken,
    submission_patient_key,
    submission_set_row,
)

_VERSION_SLOTS = {"SubmissionSetStatus", "PreviousVersion", "AssociationPropagation"}
_STATUS_SLOTS = {"OriginalStatus", "NewStatus"}


def _op_error(message: str, location: str) -> XdsError:
    return XdsError(ErrorCode.METADATA_UPDATE_OPERATION, message, location)


@dataclass
class NewVersion:
    doc: DocumentEntry
    link: Association
    previous: Row  # the latest registered version (with DOCUMENT_FACT_COLUMNS)


@dataclass
class StatusChange:
    assoc: Association
    kind: str
    original: str
    new: str
    target: Row | None = None  # a DocumentEntry's DOCUMENT_FACT_COLUMNS row


@dataclass
class UpdatePlan:
    """A checked ITI-57 request, not yet applied: what access policy decides on."""

    key: int
    submission: Submission
    versions: list[NewVersion]
    changes: list[StatusChange]


def requested_objects(sub: Submission) -> list[str]:
    """What an ITI-57 request names of the registry, for the trail of a refused or failed
    one: the logical ids and uniqueIds of its new versions, and the ends of its associations
    that are not in the request (the targets of its status updates)."""
    local = {o.id for o in sub.objects()}
    named = [x for doc in sub.documents for x in (doc.lid, doc.unique_id) if x]
    named += [end for a in sub.associations for end in (a.source, a.target) if end not in local]
    return list(dict.fromkeys(named))


def plan_update(
    conn: Connection,
    sub: Submission,
    prior_errors: list[XdsError],
    hidden: Callable[[Row], bool] | None = None,
) -> UpdatePlan:
    """Check one ITI-57 request inside ``conn``'s transaction; raise every error at once.

    ``hidden`` (the access gate's) says which DocumentEntries, by their
    :data:`DOCUMENT_FACT_COLUMNS` row, the caller cannot find: a version or status change
    naming one is answered exactly as one naming an unknown document, before any other
    check could tell them apart (its version, its status)."""
    errors = list(prior_errors)
    key = submission_patient_key(conn, sub, errors)
    ss = sub.submission_sets[0] if sub.submission_sets else None
    if key is None or ss is None:
        raise XdsFailure(errors)
    others = Submission(
        submission_sets=sub.submission_sets,
        folders=sub.folders,
        associations=[a for a in sub.associations if a.type != v.UPDATE_AVAILABILITY_STATUS],
    )
    taken = read_taken(conn, key, sub, others)
    errors += check_unique_ids(conn, others, taken)
    existing = check_references(conn, sub, key, errors, taken, hidden)
    versions = _new_versions(conn, key, sub, errors, hidden)
    changes = _status_changes(sub, existing, errors)
    if errors:
        raise XdsFailure(errors)
    _read_targets(conn, key, changes)
    return UpdatePlan(key, sub, versions, changes)


def apply_update(conn: Connection, plan: UpdatePlan) -> None:
    """Write a checked plan in the transaction that checked it."""
    key, sub, versions, changes = plan.key, plan.submission, plan.versions, plan.changes
    ss = sub.submission_sets[0]
    for change in changes:
        _apply_status(conn, key, change)
    documents = [_apply_version(conn, key, new) for new in versions]
    for assoc in sub.associations:
        assoc.element.set("status", v.APPROVED)
    # The new rows in one round trip (register.write says why).
    insert_rows(
        conn,
        (t.submission_set, [submission_set_row(key, ss)]),
        (t.document_entry, documents),
        (t.association, [association_row(key, a) for a in sub.associations]),
        *locator_rows(
            key,
            Submission(submission_sets=sub.submission_sets, associations=sub.associations),
        ),
        *locator_rows(key, Submission(documents=sub.documents), new_unique_ids=False),
    )


def _read_targets(conn: Connection, key: int, changes: list[StatusChange]) -> None:
    """The facts of the DocumentEntries whose status changes (one query)."""
    rows = document_facts(
        conn, key, [as_uuid(c.assoc.target) for c in changes if c.kind == "DocumentEntry"]
    )
    for change in changes:
        change.target = rows.get(as_uuid(change.assoc.target))


def _new_versions(
    conn: Connection,
    key: int,
    sub: Submission,
    errors: list[XdsError],
    hidden: Callable[[Row], bool] | None,
) -> list[NewVersion]:
    ss = sub.submission_sets[0]
    links = {a.target: a for a in sub.associations if a.type == v.HAS_MEMBER and a.source == ss.id}
    de = t.document_entry
    result = []
    for doc in sub.documents:
        where = doc.label
        link = links.get(doc.id)
        if doc.lid is None or doc.lid == doc.id:
            errors.append(
                _op_error(
                    "a DocumentEntry in an update must name the logical id (lid) it "
                    "updates; new documents are registered with ITI-41/42",
                    f"{where} / lid",
                )
            )
            continue
        if link is None:
            continue  # reported by validation (not a member of the SubmissionSet)
        slots = slot_values(link.element)
        for name in set(slots) - _VERSION_SLOTS:
            errors.append(
                _op_error(
                    f"slot {name} does not belong on a metadata update", f"{link.label} / {name}"
                )
            )
        previous_version = (slots.get("PreviousVersion") or [None])[0]
        if link.submission_set_status != "Original":
            errors.append(
                _op_error(
                    "the HasMember of an update needs SubmissionSetStatus Original",
                    f"{link.label} / SubmissionSetStatus",
                )
            )
        latest = conn.execute(
            select(
                de.c.version,
                de.c.unique_id,
                de.c.hash_sha1,
                de.c.size,
                de.c.content_sha256,
                *DOCUMENT_FACT_COLUMNS,
            )
            .where(de.c.patient_key == key, de.c.logical_id == as_uuid(doc.lid))
            .order_by(de.c.version.desc())
            .limit(1)
        ).one_or_none()
        if latest is None or (hidden is not None and hidden(latest)):
            errors.append(
                XdsError(
                    ErrorCode.METADATA_VERSION,
                    f"no DocumentEntry of this patient has logical id {doc.lid}",
                    f"{where} / lid",
                )
            )
            continue
        if previous_version is None or not previous_version.isdigit():
            errors.append(
                _op_error(
                    "PreviousVersion slot is missing or not a number",
                    f"{link.label} / PreviousVersion",
                )
            )
            continue
        if int(previous_version) != latest.version:
            errors.append(
                XdsError(
                    ErrorCode.METADATA_VERSION,
                    f"PreviousVersion {previous_version} is not the latest version "
                    f"({latest.version})",
                    f"{link.label} / PreviousVersion",
                )
            )
            continue
        if latest.status == v.DEPRECATED:
            errors.append(_op_error("the latest version is deprecated", f"{where} / lid"))
        if doc.unique_id != latest.unique_id:
            errors.append(_op_error("an update cannot change the uniqueId", f"{where} / uniqueId"))
        if doc.hash and latest.hash_sha1 and doc.hash.lower() != latest.hash_sha1:
            errors.append(
                _op_error("an update cannot change the document (hash)", f"{where} / hash")
            )
        if (
            doc.size
            and latest.size is not None
            and doc.size.isdigit()
            and int(doc.size) != latest.size
        ):
            errors.append(
                _op_error("an update cannot change the document (size)", f"{where} / size")
            )
        result.append(NewVersion(doc, link, latest))
    return result


def _status_changes(
    sub: Submission, existing: dict[str, Existing], errors: list[XdsError]
) -> list[StatusChange]:
    result = []
    for assoc in sub.associations:
        if assoc.type != v.UPDATE_AVAILABILITY_STATUS:
            continue
        where = assoc.label
        slots = slot_values(assoc.element)
        problems = [
            f"slot {n} does not belong on UpdateAvailabilityStatus"
            for n in set(slots) - _STATUS_SLOTS
        ]
        original = (slots.get("OriginalStatus") or [None])[0]
        new = (slots.get("NewStatus") or [None])[0]
        for name, value in (("OriginalStatus", original), ("NewStatus", new)):
            if value is None:
                problems.append(f"{name} slot is missing")
            elif value not in v.AVAILABILITY_STATUSES:
                problems.append(f"{name} {value!r} is not an availability status")
        if original and original == new:
            problems.append("OriginalStatus and NewStatus are the same")
        target = existing.get(assoc.target)
        if target is not None and target.kind not in ("DocumentEntry", "Folder"):
            problems.append(f"the status of a {target.kind} cannot be updated")
        elif target is not None and original and target.status != original:
            problems.append(f"the object's status is {target.status}, not {original}")
        errors.extend(_op_error(p, where) for p in problems)
        if not problems and target is not None and original and new:
            result.append(StatusChange(assoc, target.kind, original, new))
    return result


def _apply_status(conn: Connection, key: int, change: StatusChange) -> None:
    table = t.KIND_TABLES[change.kind]
    done = conn.execute(
        update(table)
        .where(
            table.c.patient_key == key,
            table.c.entry_uuid == as_uuid(change.assoc.target),
            table.c.status == change.original,
        )
        .values(status=change.new)
    ).rowcount
    if done != 1:
        raise XdsFailure(_op_error("the object's status changed concurrently", change.assoc.label))


def _apply_version(conn: Connection, key: int, new: NewVersion) -> dict[str, object]:
    """Deprecate the latest version; the new version's row, to insert."""
    de = t.document_entry
    doc, previous = new.doc, new.previous
    done = conn.execute(
        update(de)
        .where(
            de.c.patient_key == key,
            de.c.logical_id == as_uuid(doc.lid or ""),
            de.c.version == previous.version,
            de.c.status == previous.status,
        )
        .values(status=v.DEPRECATED)
    ).rowcount
    if done != 1:
        raise XdsFailure(
            XdsError(
                ErrorCode.METADATA_VERSION,
                f"version {previous.version} was updated concurrently",
                doc.label,
            )
        )
    version = previous.version + 1
    return document_row(key, doc, previous.content_sha256, version, previous.status)
