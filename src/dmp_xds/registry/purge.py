"""``dmp-xds purge``: the hosting physician's definitive removal of a deleted document.

In the DMP, deleting a document is a status change (ITI-57, ``Deleted``): the document leaves
every view but stays, metadata and bytes, for as long as the host keeps it. Purging ends that:
on a hosting physician's decision (issue 5) every version of the document, its associations
(HasMember, RPLC and folder memberships, status updates) and the SubmissionSets left empty are
erased, and its bytes too unless another entry still references them. The audit trail keeps
that it happened (who decided, when, which ids), never what the document was.

The rules, each a refusal that leaves everything as it was:

* the physician named by ``--by`` must be listed in ``DMP_XDS_PURGE_AUTHORISED``
  (:func:`dmp_xds.policy.purge.operator_may_purge`);
* the document must be deleted: its latest version ``Deleted``, the earlier ones ``Deleted``
  or ``Deprecated`` (:func:`dmp_xds.policy.purge.purgeable`, ITI-62's rule too): a document
  still visible, archived or merely replaced is not purged by mistake.

How it is done, reusing what ITI-62 and ``dmp-xds gc`` already trust:

1. one database transaction takes the patient's removal lock (:mod:`.patient_lock`: ITI-57
   and submissions of that record wait), checks the rules, works out the objects to erase
   (:func:`.remove.with_dependents`), erases them with :func:`.remove.remove_objects` (which
   re-checks that nothing remaining is left dangling) and records the audit event;
2. after the commit, each content key goes through
   :func:`dmp_xds.repository.maintenance.remove_if_unreferenced`: deleted under the content
   lock when no entry references it any more, kept when another entry does or when a
   submission is storing the same bytes at that moment. Bytes first and metadata second could
   leave metadata without a document if the commit failed; this order can at worst leave
   unreferenced bytes, which ``dmp-xds gc`` collects.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, select

from ..audit.trail import AuditEvent, audit_event
from ..errors import XdsFailure
from ..metadata.datatypes import PatientId
from ..policy.purge import operator_may_purge, purgeable
from ..repository.maintenance import Removal, remove_if_unreferenced
from ..repository.store import DocumentStore
from . import patient_lock
from . import tables as t
from .register import as_urn, patient_key
from .remove import remove_objects, with_dependents

PURGE_ACTION = "urn:dmp-xds:cli:purge"
PURGE_TRANSACTION = "purge"


class PurgeRefused(Exception):
    """The purge is not allowed; nothing was changed."""


@dataclass
class PurgePlan:
    """What purging one document erases."""

    unique_id: str
    versions: list[tuple[int, str]]
    """(version, status) of each version, oldest first."""
    objects: dict[uuid.UUID, str]
    """entryUUID -> kind of every object to erase."""
    content_keys: set[str]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for kind in self.objects.values():
            counts[kind] = counts.get(kind, 0) + 1
        return counts


@dataclass
class PurgeReport:
    plan: PurgePlan
    bytes: dict[str, Removal] = field(default_factory=dict)


def _short(status: str) -> str:
    return status.rsplit(":", 1)[-1]


def plan_purge(conn: Connection, patient: PatientId, unique_id: str) -> PurgePlan:
    """Check the rules and list what goes (read only; :func:`purge` calls it again under the
    patient's lock). Raises :class:`PurgeRefused`."""
    key = patient_key(conn, patient.canonical)
    de = t.document_entry
    rows = (
        []
        if key is None
        else conn.execute(
            select(de.c.entry_uuid, de.c.version, de.c.status, de.c.content_sha256)
            .where(de.c.patient_key == key, de.c.unique_id == unique_id)
            .order_by(de.c.version)
        ).all()
    )
    if key is None or not rows:
        raise PurgeRefused(f"no document {unique_id} in this patient's record")
    decision = purgeable((r.version, r.status) for r in rows)
    if not decision:
        raise PurgeRefused(f"document {unique_id} cannot be purged: {decision.reason}")
    objects = with_dependents(conn, key, {r.entry_uuid: "DocumentEntry" for r in rows})
    return PurgePlan(
        unique_id,
        [(r.version, r.status) for r in rows],
        objects,
        {r.content_sha256 for r in rows if r.content_sha256},
    )


def _audit(
    conn: Connection,
    *,
    by: str | None,
    patient: PatientId,
    outcome: str,
    objects: list[str],
    detail: str,
) -> None:
    """The trail's record of a purge or of its refusal: ids only, never content.

    Written as a row directly because the actor is not a VIHF principal: the operator acts on
    the named physician's decision, whose id is what the trail must show.
    """
    event = AuditEvent(
        request_id=str(uuid.uuid4()),
        action=PURGE_ACTION,
        outcome=outcome,
        objects=objects,
        detail=detail,
        patient_id=patient.canonical,
    )
    row = event.row()
    row.update(transaction=PURGE_TRANSACTION, actor_id=by)
    conn.execute(audit_event.insert().values(**row))


def _refuse(engine: Engine, by: str | None, patient: PatientId, unique_id: str, why: str) -> None:
    with engine.begin() as conn:
        _audit(conn, by=by, patient=patient, outcome="refused", objects=[unique_id], detail=why)
    raise PurgeRefused(why)


def purge(
    engine: Engine,
    store: DocumentStore,
    patient: PatientId,
    unique_id: str,
    *,
    by: str | None,
    authorised: Collection[str],
) -> PurgeReport:
    """Purge ``unique_id`` of ``patient``'s record (see the module docstring). Raises
    :class:`PurgeRefused` (audited) when a rule says no."""
    decision = operator_may_purge(by, authorised)
    if not decision:
        _refuse(engine, by, patient, unique_id, decision.reason)
    try:
        with engine.begin() as conn:
            key = patient_key(conn, patient.canonical)
            if key is not None:
                patient_lock.hold_for_removal(conn, key)
            plan = plan_purge(conn, patient, unique_id)
            removed = remove_objects(conn, patient, [as_urn(e) for e in plan.objects])
            counts = ", ".join(f"{n} {kind}" for kind, n in sorted(removed.counts.items()))
            _audit(
                conn,
                by=by,
                patient=patient,
                outcome="success",
                objects=[unique_id, *removed.entry_uuids],
                detail=f"purged {counts}",
            )
    except PurgeRefused as exc:
        _refuse(engine, by, patient, unique_id, str(exc))
    except XdsFailure as failure:  # a state remove_objects refuses: report, change nothing
        why = "; ".join(e.message for e in failure.errors)
        _refuse(engine, by, patient, unique_id, f"the registry refuses the removal: {why}")
    report = PurgeReport(plan)
    with engine.connect() as conn:
        for content_key in sorted(plan.content_keys):
            report.bytes[content_key] = remove_if_unreferenced(conn, store, content_key)
    return report


def describe(plan: PurgePlan) -> list[str]:
    """What a purge erases, for the operator (no patient identifier)."""
    versions = ", ".join(f"v{n} {_short(status)}" for n, status in plan.versions)
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(plan.counts().items()))
    return [
        f"document {plan.unique_id} ({versions})",
        f"  metadata to erase: {counts}",
        *(
            f"  document bytes {k}: deleted unless another entry uses them"
            for k in sorted(plan.content_keys)
        ),
    ]


BYTES_OUTCOMES = {
    Removal.REMOVED: "deleted",
    Removal.REFERENCED: "kept (another entry references them)",
    Removal.BUSY: "kept (a submission is storing the same bytes; dmp-xds gc will decide)",
    Removal.ABSENT: "already absent from the store",
}
