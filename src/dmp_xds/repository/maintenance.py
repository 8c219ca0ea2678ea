"""Keeping the document store and the registry in step: ``dmp-xds gc`` and ``dmp-xds verify``.

Why a collector at all: ITI-41 makes bytes durable *before* it commits their entry (DESIGN.md,
"Atomicity"), so a submission that fails after the write leaves an unreferenced blob behind. That
is the price of never having metadata without a document; this module pays it back.

**gc** removes blobs that no ``document_entry.content_sha256`` references, but only when (1) the
blob was last written more than the grace period ago (``DMP_XDS_GC_GRACE_S``, 24 h by default),
so that the bytes of a submission still in flight are never candidates, and (2) at the moment of
deletion, inside a transaction that holds the key's exclusive lock
(:mod:`.content_lock`), the registry still has no reference to it. The lock closes the one gap the
grace period leaves: a new submission of bytes that are already stored as an old orphan writes
nothing (deduplication) and would otherwise only reference them at its commit. gc also removes
stale spool files (uploads of requests that crashed). Any entry referencing the bytes keeps them,
whatever its status or repository: a deprecated version is still retrievable.

**verify** walks the keys this repository's entries reference and the keys the store holds, hashes
every referenced blob, and reports missing and corrupt documents with the uniqueIds of the entries
they break (never a patient identifier), and blobs no entry references.

Both walk the store listing and the registry's referenced keys as two streams sorted by key and
merge them, so memory stays flat at any scale (the registry side is read in keyset-paginated
batches, each a short query on the ``document_entry_content`` index).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, and_, select

from ..registry import tables as t
from .content_lock import try_hold_for_removal
from .store import BlobInfo, BlobStatus, DocumentStore

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 24 * 3600
BATCH = 10_000


class OrderError(RuntimeError):
    """A stream that must be sorted by key is not (the merge would give wrong answers)."""


def _ascending(keys: Iterator[str], what: str) -> Iterator[str]:
    """Pass ``keys`` through, failing loudly if they are not strictly ascending (bytewise).

    The registry side relies on the database collation ordering lower-case hex like bytes, which
    holds for C, ICU and glibc locales alike; this guard makes a surprise an error, never a
    wrong deletion.
    """
    last = ""
    for key in keys:
        if key <= last:
            raise OrderError(f"{what} is not in ascending key order at {key}")
        last = key
        yield key


def referenced_keys(engine: Engine, repository_unique_id: str | None = None) -> Iterator[str]:
    """Distinct content keys referenced by document entries, ascending, in batches.

    Each batch is its own short query (no transaction held across the walk): a reference added
    meanwhile is caught by the collector's re-check under the lock, one removed meanwhile only
    means a blob is kept until the next run.
    """
    de = t.document_entry
    condition = de.c.content_sha256.is_not(None)
    if repository_unique_id is not None:
        condition = and_(condition, de.c.repository_unique_id == repository_unique_id)
    last = ""
    while True:
        query = (
            select(de.c.content_sha256)
            .where(condition, de.c.content_sha256 > last)
            .group_by(de.c.content_sha256)
            .order_by(de.c.content_sha256)
            .limit(BATCH)
        )
        with engine.connect() as conn:
            batch = list(conn.execute(query).scalars())
        yield from batch
        if len(batch) < BATCH:
            return
        last = batch[-1]


def _blobs_ascending(store: DocumentStore) -> Iterator[BlobInfo]:
    last = ""
    for blob in store.iter_blobs():
        if blob.key <= last:
            raise OrderError(f"store listing is not in ascending key order at {blob.key}")
        last = blob.key
        yield blob


def merge(
    blobs: Iterator[BlobInfo], references: Iterator[str]
) -> Iterator[tuple[str, BlobInfo | None, bool]]:
    """``(key, blob or None, referenced)`` for every key of either sorted stream."""
    blob = next(blobs, None)
    ref = next(references, None)
    while blob is not None or ref is not None:
        if ref is None or (blob is not None and blob.key < ref):
            assert blob is not None
            yield blob.key, blob, False
            blob = next(blobs, None)
        elif blob is None or ref < blob.key:
            yield ref, None, True
            ref = next(references, None)
        else:
            yield ref, blob, True
            blob, ref = next(blobs, None), next(references, None)


def _is_referenced(conn: Connection, key: str) -> bool:
    de = t.document_entry
    query = select(de.c.entry_uuid).where(de.c.content_sha256 == key).limit(1)
    return conn.execute(query).first() is not None


@dataclass
class GcReport:
    dry_run: bool
    grace_s: float
    scanned: int = 0
    scanned_bytes: int = 0
    referenced: int = 0
    referenced_late: int = 0
    """Of ``referenced``: found referenced only by the last look, under the lock."""
    young: int = 0
    """Unreferenced, but written within the grace period: kept."""
    busy: int = 0
    """Unreferenced and old, but a submission was registering the same bytes: kept."""
    removed: list[BlobInfo] = field(default_factory=list)
    """Removed (in a dry run: what would be removed)."""
    failed: list[str] = field(default_factory=list)
    spool_removed: int | None = None
    """Stale spool files removed (None in a dry run)."""

    @property
    def bytes_freed(self) -> int:
        return sum(b.size for b in self.removed)


def collect_garbage(
    engine: Engine,
    store: DocumentStore,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    dry_run: bool = False,
    now: float | None = None,
) -> GcReport:
    """Remove unreferenced blobs last written more than ``grace_s`` seconds ago (see module)."""
    if grace_s < 0:
        raise ValueError("the grace period cannot be negative")
    report = GcReport(dry_run=dry_run, grace_s=grace_s)
    cutoff = (time.time() if now is None else now) - grace_s
    references = _ascending(referenced_keys(engine), "registry key stream")
    for _key, blob, referenced in merge(_blobs_ascending(store), references):
        if blob is None:
            continue  # referenced but not stored: verify's business
        report.scanned += 1
        report.scanned_bytes += blob.size
        if referenced:
            report.referenced += 1
        elif blob.modified >= cutoff:
            report.young += 1
        elif dry_run:
            report.removed.append(blob)
        else:
            _remove(engine, store, blob, report)
    if not dry_run:
        report.spool_removed = store.clean_spool(grace_s)
    return report


class Removal(enum.StrEnum):
    """What :func:`remove_if_unreferenced` did with one key's bytes."""

    REMOVED = "removed"
    REFERENCED = "referenced"  # an entry references them: kept
    BUSY = "busy"  # a submission is registering the same bytes right now: kept
    ABSENT = "absent"  # nothing stored under that key


def remove_if_unreferenced(conn: Connection, store: DocumentStore, key: str) -> Removal:
    """Delete ``key``'s bytes under its exclusive lock, after a last look at the registry, in
    a short transaction of its own on ``conn`` (which must have none open).

    The one way bytes leave the store (``dmp-xds gc``, ``dmp-xds purge`` and ITI-62), so that
    all keep the content lock's promise to submissions (:mod:`.content_lock`).
    """
    with conn.begin():
        if not try_hold_for_removal(conn, key):
            return Removal.BUSY
        if _is_referenced(conn, key):
            return Removal.REFERENCED
        return Removal.REMOVED if store.delete(key) else Removal.ABSENT


def _remove(engine: Engine, store: DocumentStore, blob: BlobInfo, report: GcReport) -> None:
    """Delete one candidate under its exclusive lock, after a last look at the registry."""
    try:
        with engine.connect() as conn:
            outcome = remove_if_unreferenced(conn, store, blob.key)
    except Exception:  # one unremovable blob must not stop the collection
        log.exception("could not collect document bytes", extra={"sha256": blob.key})
        report.failed.append(blob.key)
        return
    if outcome is Removal.BUSY:
        report.busy += 1
    elif outcome is Removal.REFERENCED:
        report.referenced += 1
        report.referenced_late += 1
    elif outcome is Removal.REMOVED:
        report.removed.append(blob)
        log.info("collected unreferenced document bytes", extra={"sha256": blob.key})


@dataclass
class Damage:
    """A referenced document whose bytes cannot be served."""

    key: str
    status: BlobStatus
    unique_ids: list[str]


@dataclass
class VerifyReport:
    referenced: int = 0
    stored: int = 0
    intact: int = 0
    damaged: list[Damage] = field(default_factory=list)
    unreferenced: list[BlobInfo] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.damaged

    @property
    def missing(self) -> list[Damage]:
        return [d for d in self.damaged if d.status is BlobStatus.MISSING]

    @property
    def corrupt(self) -> list[Damage]:
        return [d for d in self.damaged if d.status is BlobStatus.CORRUPT]


def _unique_ids(engine: Engine, key: str, repository_unique_id: str | None) -> list[str]:
    de = t.document_entry
    query = select(de.c.unique_id).where(de.c.content_sha256 == key)
    if repository_unique_id is not None:
        query = query.where(de.c.repository_unique_id == repository_unique_id)
    with engine.connect() as conn:
        return sorted(set(conn.execute(query).scalars()))


def verify(
    engine: Engine, store: DocumentStore, *, repository_unique_id: str | None = None
) -> VerifyReport:
    """Check every document referenced by entries of ``repository_unique_id`` (all if None)."""
    report = VerifyReport()
    references = _ascending(referenced_keys(engine, repository_unique_id), "registry key stream")
    for key, blob, referenced in merge(_blobs_ascending(store), references):
        if blob is not None:
            report.stored += 1
        if not referenced:
            assert blob is not None
            report.unreferenced.append(blob)
            continue
        report.referenced += 1
        status = BlobStatus.MISSING if blob is None else store.check(key)
        if status is BlobStatus.OK:
            report.intact += 1
        else:
            unique_ids = _unique_ids(engine, key, repository_unique_id)
            report.damaged.append(Damage(key, status, unique_ids))
    return report


def gc_summary(report: GcReport) -> list[str]:
    """What ``dmp-xds gc`` prints: one line per removed blob, then the totals."""
    verb = "would remove" if report.dry_run else "removed"
    lines = [f"{verb} {b.key} ({b.size} bytes)" for b in report.removed]
    lines += [f"FAILED to remove {key}" for key in report.failed]
    spool = (
        "not cleaned (dry run)"
        if report.spool_removed is None
        else f"{report.spool_removed} stale files removed"
    )
    lines += [
        f"scanned     {report.scanned} blobs ({report.scanned_bytes} bytes)",
        f"referenced  {report.referenced}",
        f"young       {report.young} (unreferenced, written less than {report.grace_s:g} s ago)",
        f"busy        {report.busy} (being registered by a submission)",
        f"{verb:<11} {len(report.removed)} ({report.bytes_freed} bytes freed)",
        f"spool       {spool}",
    ]
    if report.dry_run:
        lines.append("dry run: nothing was removed")
    return lines


def verify_summary(report: VerifyReport, *, list_unreferenced: int = 50) -> list[str]:
    """What ``dmp-xds verify`` prints: each problem, then the totals (no patient identifier)."""
    lines = [
        f"{d.status.value.upper():<8} {d.key} DocumentEntry uniqueIds: {', '.join(d.unique_ids)}"
        for d in report.damaged
    ]
    for blob in report.unreferenced[:list_unreferenced]:
        written = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(blob.modified))
        lines.append(f"UNREFERENCED {blob.key} ({blob.size} bytes, written {written})")
    if len(report.unreferenced) > list_unreferenced:
        lines.append(f"... and {len(report.unreferenced) - list_unreferenced} more unreferenced")
    unreferenced_bytes = sum(b.size for b in report.unreferenced)
    lines += [
        f"referenced    {report.referenced} documents ({report.stored} blobs in the store)",
        f"intact        {report.intact}",
        f"missing       {len(report.missing)}",
        f"corrupt       {len(report.corrupt)}",
        f"unreferenced  {len(report.unreferenced)} ({unreferenced_bytes} bytes; `dmp-xds gc` "
        "collects them after the grace period)",
        "OK" if report.healthy else "DAMAGED: some registered documents cannot be served",
    ]
    return lines
