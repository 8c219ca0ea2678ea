"""gc and verify logic against a real FileStore and the real registry database (no mocks).

Registry rows are written through the same path as ITI-41 (parse, check, write with content
keys), into the shared test database; each test uses its own patient and, for verify, its own
repositoryUniqueId, so that rows of other tests (whose bytes live in other stores) stay out of
its reports.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from dmp_xds.metadata.ebrim import parse_submission
from dmp_xds.registry.register import check, create_patient, write
from dmp_xds.repository.content_lock import hold_for_write
from dmp_xds.repository.maintenance import (
    BlobInfo,
    OrderError,
    collect_garbage,
    gc_summary,
    merge,
    verify,
    verify_summary,
)
from dmp_xds.repository.store import BlobStatus, FileStore
from tests.fixtures.metadata import Doc, new_patient_id, submit_objects_request, unique_oid

DAY = 24 * 3600
_repo = itertools.count(1)


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store")


@pytest.fixture
def repository() -> str:
    return f"1.2.250.1.999.77.{int(time.time())}.{next(_repo)}"


def register(engine: Engine, store: FileStore, docs: list[Doc], repository: str) -> list[str]:
    """Store the documents' bytes and register them as ITI-41 does; return their keys."""
    pid = new_patient_id()
    with engine.begin() as conn:
        create_patient(conn, pid)
    for doc in docs:
        doc.repository_unique_id = repository
    sub, errors = parse_submission(submit_objects_request(pid, docs, registry_side=True))
    assert not errors, errors
    keys = {
        de.id: store.put_bytes(doc.content).sha256
        for de, doc in zip(sub.documents, docs, strict=True)
    }
    with engine.begin() as conn:
        write(conn, check(conn, sub), keys)
    return [keys[de.id] for de in sub.documents]


def age(store: FileStore, key: str, seconds: float) -> None:
    """Make a blob look written ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(store.path_of(key), (then, then))


def orphan(store: FileStore, old: bool = True) -> str:
    key = store.put_bytes(os.urandom(64)).sha256
    if old:
        age(store, key, 2 * DAY)
    return key


def test_gc_removes_only_old_unreferenced_bytes(
    engine: Engine, store: FileStore, repository: str
) -> None:
    referenced = register(engine, store, [Doc(os.urandom(100)), Doc(os.urandom(200))], repository)
    for key in referenced:
        age(store, key, 30 * DAY)  # old, but an entry references it
    old, young = orphan(store), orphan(store, old=False)
    stale = store.spool_dir / "part-crashed.tmp"
    stale.write_bytes(b"half an upload")
    os.utime(stale, (time.time() - 2 * DAY,) * 2)
    live = store.spool_dir / "part-live.tmp"
    live.write_bytes(b"an upload in progress")

    report = collect_garbage(engine, store, grace_s=DAY)

    assert [b.key for b in report.removed] == [old]
    assert report.bytes_freed == 64
    assert (report.scanned, report.referenced, report.young, report.busy) == (4, 2, 1, 0)
    assert report.spool_removed == 1 and not stale.exists() and live.exists()
    assert sorted(store.iter_keys()) == sorted([*referenced, young])
    lines = gc_summary(report)
    assert f"removed {old} (64 bytes)" in lines
    assert any(line.startswith("removed     1 (64 bytes freed)") for line in lines)


def test_gc_dry_run_removes_nothing(engine: Engine, store: FileStore) -> None:
    old = orphan(store)
    stale = store.spool_dir / "part-crashed.tmp"
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 2 * DAY,) * 2)
    report = collect_garbage(engine, store, grace_s=DAY, dry_run=True)
    assert [b.key for b in report.removed] == [old]
    assert store.exists(old) and stale.exists()
    assert report.spool_removed is None
    assert f"would remove {old} (64 bytes)" in gc_summary(report)


def test_gc_grace_period_is_measured_against_now(engine: Engine, store: FileStore) -> None:
    key = orphan(store, old=False)
    assert collect_garbage(engine, store, grace_s=3600).removed == []
    later = time.time() + 3601
    assert [b.key for b in collect_garbage(engine, store, grace_s=3600, now=later).removed] == [key]
    with pytest.raises(ValueError):
        collect_garbage(engine, store, grace_s=-1)


def test_gc_keeps_bytes_a_submission_is_registering(engine: Engine, store: FileStore) -> None:
    """An old orphan that a submission in flight deduplicates against: ITI-41 holds its key."""
    key = orphan(store)
    with engine.begin() as submission:
        hold_for_write(submission, [key])
        report = collect_garbage(engine, store, grace_s=DAY)
        assert (report.busy, report.removed) == (1, [])
        assert store.exists(key)
    assert [b.key for b in collect_garbage(engine, store, grace_s=DAY).removed] == [key]


class ReferencedDuringWalk(FileStore):
    """A real FileStore whose listing registers an entry for ``late`` while gc walks it, after
    gc has read the registry's referenced keys: gc must see the reference at deletion time."""

    late: tuple[Engine, Doc, str] | None = None

    def iter_blobs(self) -> Iterator[BlobInfo]:
        for n, blob in enumerate(super().iter_blobs()):
            if n == 1 and self.late is not None:
                engine, doc, repository = self.late
                register(engine, self, [doc], repository)
            yield blob


def test_gc_rechecks_the_registry_before_deleting(
    engine: Engine, tmp_path: Path, repository: str
) -> None:
    store = ReferencedDuringWalk(tmp_path / "store")
    contents = [os.urandom(64), os.urandom(64)]
    first, second = sorted(contents, key=lambda c: hashlib.sha256(c).hexdigest())
    first_key, second_key = orphan_bytes(store, first), orphan_bytes(store, second)
    store.late = (engine, Doc(second), repository)  # registered once `first` was handled
    report = collect_garbage(engine, store, grace_s=DAY)
    assert [b.key for b in report.removed] == [first_key]
    assert (report.referenced, report.referenced_late) == (1, 1)
    assert store.exists(second_key)


def orphan_bytes(store: FileStore, data: bytes) -> str:
    key = store.put_bytes(data).sha256
    age(store, key, 2 * DAY)
    return key


def test_verify_healthy_store(engine: Engine, store: FileStore, repository: str) -> None:
    keys = register(engine, store, [Doc(os.urandom(50)), Doc(os.urandom(60))], repository)
    report = verify(engine, store, repository_unique_id=repository)
    assert report.healthy
    assert (report.referenced, report.intact, report.stored) == (2, 2, 2)
    assert report.unreferenced == [] and report.damaged == []
    assert verify_summary(report)[-1] == "OK"
    assert keys


def corrupt(store: FileStore, key: str) -> None:
    """Rewrite a stored blob in place (blobs are 0440: chmod first)."""
    path = store.path_of(key)
    path.chmod(0o640)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_reports_missing_corrupt_and_unreferenced(
    engine: Engine, store: FileStore, repository: str
) -> None:
    shared = os.urandom(80)
    docs = [Doc(shared), Doc(shared), Doc(os.urandom(90)), Doc(os.urandom(70))]
    keys = register(engine, store, docs, repository)
    assert keys[0] == keys[1]  # two entries, one blob
    corrupt(store, keys[0])
    store.delete(keys[2])
    stray = orphan(store)

    report = verify(engine, store, repository_unique_id=repository)

    assert not report.healthy
    assert (report.referenced, report.intact) == (3, 1)
    assert [(d.key, d.status) for d in report.corrupt] == [(keys[0], BlobStatus.CORRUPT)]
    assert report.corrupt[0].unique_ids == sorted([docs[0].unique_id, docs[1].unique_id])
    assert [(d.key, d.unique_ids) for d in report.missing] == [(keys[2], [docs[2].unique_id])]
    assert [b.key for b in report.unreferenced] == [stray]
    text = "\n".join(verify_summary(report))
    assert f"CORRUPT  {keys[0]} DocumentEntry uniqueIds: " in text
    assert f"MISSING  {keys[2]} DocumentEntry uniqueIds: {docs[2].unique_id}" in text
    assert f"UNREFERENCED {stray} (64 bytes" in text
    assert text.endswith("DAMAGED: some registered documents cannot be served")


def test_verify_scope_is_this_repository(engine: Engine, store: FileStore, repository: str) -> None:
    """Entries of another repository sharing the registry do not make this store look broken,
    but gc still honours their references (it never deletes what anything references)."""
    other_store = FileStore(store.root.parent / "other")
    other_key = register(engine, other_store, [Doc(os.urandom(40))], unique_oid(9))[0]
    mine = register(engine, store, [Doc(os.urandom(40))], repository)[0]
    report = verify(engine, store, repository_unique_id=repository)
    assert report.healthy and report.referenced == 1
    store.put_bytes(other_store.open(other_key).read_all())
    age(store, other_key, 2 * DAY)
    assert collect_garbage(engine, store, grace_s=DAY).removed == []
    assert store.exists(other_key) and store.exists(mine)


def info(key: str) -> BlobInfo:
    return BlobInfo(key, 1, 0.0)


def test_merge_pairs_two_sorted_streams() -> None:
    a, b, c, d = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
    merged = list(merge(iter([info(a), info(c), info(d)]), iter([b, c])))
    assert [(k, blob is not None, ref) for k, blob, ref in merged] == [
        (a, True, False),
        (b, False, True),
        (c, True, True),
        (d, True, False),
    ]
    assert list(merge(iter([]), iter([]))) == []


def test_unsorted_listing_stops_gc(engine: Engine, tmp_path: Path) -> None:
    class Shuffled(FileStore):
        def iter_blobs(self) -> Iterator[BlobInfo]:
            yield from reversed(list(super().iter_blobs()))

    store = Shuffled(tmp_path / "store")
    keys = [orphan(store), orphan(store)]
    with pytest.raises(OrderError):
        collect_garbage(engine, store, grace_s=DAY)
    # Listed first, the larger key was judged correctly (and collected); the run stops at the
    # smaller one, which the merge could have misjudged. (Deletion is re-checked under the lock
    # anyway; the guard is what keeps verify's report right.)
    assert store.exists(min(keys)) and not store.exists(max(keys))
