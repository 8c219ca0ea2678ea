"""The filesystem content-addressed store, on a real filesystem (no mocks).

What must hold: bytes come back identical; the same bytes are stored once, however many writers
race; no wrong, truncated or missing blob is ever served silently; keys cannot escape the tree.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import stat
import threading
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

from dmp_xds.repository.store import (
    BlobStatus,
    CorruptDocument,
    DocumentStore,
    FileStore,
    HashMismatch,
    MissingDocument,
    StoredBlob,
    open_store,
)


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store")


def spool(store: FileStore, data: bytes, name: str = "part") -> tuple[Path, str]:
    """Write a file the way the SOAP layer does: into the spool dir, hashed on the way."""
    path = store.spool_dir / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def corrupt_one_byte(path: Path, offset: int = 0) -> None:
    path.chmod(0o640)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_implements_protocol(store: FileStore) -> None:
    assert isinstance(store, DocumentStore)
    assert store.spool_dir.is_dir()
    assert store.spool_dir.stat().st_dev == store.root.stat().st_dev


def test_put_file_round_trip_moves_the_spooled_file(store: FileStore) -> None:
    data = os.urandom(20_000)
    path, key = spool(store, data)
    blob = store.put_file(path, key)
    assert blob == StoredBlob(key, len(data), created=True)
    assert not path.exists()
    assert store.path_of(key) == store.root / "sha256" / key[:2] / key[2:4] / key
    assert store.exists(key)
    with store.open(key) as reader:
        assert reader.size == len(data)
        assert reader.read_all() == data
        assert b"".join(reader.iter_chunks(1000)) == data  # repeatable, any chunk size
    assert list(store.spool_dir.iterdir()) == []


def test_put_bytes_round_trip(store: FileStore) -> None:
    blob = store.put_bytes(b"<ClinicalDocument/>")
    assert blob.created and blob.size == 19
    assert blob.sha256 == hashlib.sha256(b"<ClinicalDocument/>").hexdigest()
    with store.open(blob.sha256) as reader:
        assert reader.read_all() == b"<ClinicalDocument/>"
    assert list(store.spool_dir.iterdir()) == []


def test_empty_document(store: FileStore) -> None:
    blob = store.put_bytes(b"")
    with store.open(blob.sha256) as reader:
        assert reader.size == 0
        assert reader.read_all() == b""
        assert list(reader.iter_chunks()) == []


def test_second_put_of_same_bytes_is_deduplicated(store: FileStore) -> None:
    data = b"same bytes" * 1000
    first = store.put_file(*spool(store, data, "a"))
    path, key = spool(store, data, "b")
    second = store.put_file(path, key)
    assert first.created and not second.created
    assert second.sha256 == first.sha256 and second.size == len(data)
    assert not path.exists()
    assert store.put_bytes(data).created is False
    assert list(store.spool_dir.iterdir()) == []
    assert list(store.iter_keys()) == [key]


def test_put_file_refuses_a_wrong_hash(store: FileStore) -> None:
    path, _ = spool(store, b"real content")
    wrong = hashlib.sha256(b"other content").hexdigest()
    with pytest.raises(HashMismatch) as info:
        store.put_file(path, wrong)
    assert info.value.actual == hashlib.sha256(b"real content").hexdigest()
    assert path.exists(), "left for the caller's spool clean-up"
    assert not store.exists(wrong)
    assert list(store.iter_keys()) == []


def test_blobs_are_read_only(store: FileStore) -> None:
    blob = store.put_file(*spool(store, b"x" * 100))
    assert stat.S_IMODE(store.path_of(blob.sha256).stat().st_mode) == 0o440
    assert stat.S_IMODE(store.path_of(store.put_bytes(b"y").sha256).stat().st_mode) == 0o440


def test_flipped_byte_is_detected_before_serving(store: FileStore) -> None:
    blob = store.put_bytes(os.urandom(300_000))
    corrupt_one_byte(store.path_of(blob.sha256), offset=299_999)
    with pytest.raises(CorruptDocument) as info:
        store.open(blob.sha256)
    assert info.value.key == blob.sha256
    assert store.check(blob.sha256) is BlobStatus.CORRUPT


def test_truncated_blob_is_detected(store: FileStore) -> None:
    blob = store.put_bytes(os.urandom(100_000))
    path = store.path_of(blob.sha256)
    path.chmod(0o640)
    os.truncate(path, 50_000)
    with pytest.raises(CorruptDocument, match="50000 bytes"):
        store.open(blob.sha256)


def test_blob_shortened_after_verification_is_not_served_short(store: FileStore) -> None:
    blob = store.put_bytes(os.urandom(200_000))
    reader = store.open(blob.sha256)
    os.truncate(store.path_of(blob.sha256), 100_000)
    with pytest.raises(CorruptDocument, match="shortened"):
        b"".join(reader.iter_chunks())
    reader.close()


def test_missing_blob(store: FileStore) -> None:
    key = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(MissingDocument) as info:
        store.open(key)
    assert info.value.key == key
    assert store.check(key) is BlobStatus.MISSING
    assert not store.exists(key)


def test_resubmission_heals_a_corrupt_blob(store: FileStore) -> None:
    data = os.urandom(10_000)
    key = store.put_bytes(data).sha256
    corrupt_one_byte(store.path_of(key))
    blob = store.put_file(*spool(store, data))
    assert blob.created, "the verified new bytes replaced the corrupt ones"
    assert store.check(key) is BlobStatus.OK
    assert stat.S_IMODE(store.path_of(key).stat().st_mode) == 0o440


@pytest.mark.parametrize(
    "key",
    [
        "",
        "a" * 63,
        "a" * 65,
        "A" * 64,  # upper case would alias a second copy
        "a" * 64 + "\n",
        "../" + "a" * 61,
        "g" * 64,
        "ab/cd/" + "a" * 58,
        None,
        b"a" * 64,
    ],
)
def test_bad_keys_are_rejected(store: FileStore, key: object) -> None:
    for call in (store.open, store.exists, store.delete, store.check, store.path_of):
        with pytest.raises(ValueError, match="not a SHA-256 key"):
            call(key)  # type: ignore[arg-type]
    path, _ = spool(store, b"x")
    with pytest.raises(ValueError, match="not a SHA-256 key"):
        store.put_file(path, key)  # type: ignore[arg-type]


def test_iter_keys_check_and_delete(store: FileStore) -> None:
    keys = sorted(store.put_bytes(str(i).encode()).sha256 for i in range(20))
    # Junk that is not a blob: the walk must skip it, never yield it.
    (store.blobs / "zz").mkdir()
    (store.path_of(keys[0]).parent / "notes.txt").write_text("x")
    (store.path_of(keys[0]).parent / keys[1]).write_text("misplaced")
    assert list(store.iter_keys()) == keys
    assert all(store.check(k) is BlobStatus.OK for k in keys)
    assert store.delete(keys[3]) is True
    assert store.delete(keys[3]) is False
    with pytest.raises(MissingDocument):
        store.open(keys[3])
    assert list(store.iter_keys()) == keys[:3] + keys[4:]


def test_open_reader_survives_delete(store: FileStore) -> None:
    data = os.urandom(5000)
    key = store.put_bytes(data).sha256
    with store.open(key) as reader:
        store.delete(key)
        assert reader.read_all() == data


def test_clean_spool_removes_only_stale_files(store: FileStore) -> None:
    stale, fresh = store.spool_dir / "stale", store.spool_dir / "fresh"
    stale.write_bytes(b"old")
    fresh.write_bytes(b"new")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    assert store.clean_spool(older_than_s=600) == 1
    assert not stale.exists() and fresh.exists()


def test_put_file_from_another_filesystem(store: FileStore) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == store.root.stat().st_dev:
        pytest.skip("no second filesystem to spool on")
    data = os.urandom(70_000)
    path = shm / f"dmp-xds-test-{os.getpid()}"
    path.write_bytes(data)
    try:
        blob = store.put_file(path, hashlib.sha256(data).hexdigest())
    finally:
        path.unlink(missing_ok=True)
    assert blob.created and not path.exists()
    with store.open(blob.sha256) as reader:
        assert reader.read_all() == data
    assert list(store.spool_dir.iterdir()) == []


def test_concurrent_puts_from_threads(store: FileStore) -> None:
    data = os.urandom(256_000)
    key = hashlib.sha256(data).hexdigest()
    n = 8
    paths = [spool(store, data, f"t{i}")[0] for i in range(n)]
    barrier = threading.Barrier(n)

    def put(path: Path) -> StoredBlob:
        barrier.wait()
        return store.put_file(path, key)

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(put, paths))
    assert sum(r.created for r in results) == 1
    assert all(r.sha256 == key for r in results)
    assert store.check(key) is BlobStatus.OK
    assert list(store.spool_dir.iterdir()) == []


def _put_in_process(root: str, name: str, start_at: float) -> bool:
    """Worker for the multi-process race: a separate FileStore, like a gunicorn worker."""
    s = FileStore(Path(root))
    data = b"shared document " * 20_000
    path = s.spool_dir / name
    path.write_bytes(data)
    time.sleep(max(0.0, start_at - time.time()))
    return s.put_file(path, hashlib.sha256(data).hexdigest()).created


def test_concurrent_puts_from_processes(store: FileStore) -> None:
    n = 4
    start_at = time.time() + 1.0  # spawned interpreters need a moment to import
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n, mp_context=ctx) as pool:
        futures = [
            pool.submit(_put_in_process, str(store.root), f"p{i}", start_at) for i in range(n)
        ]
        created = [f.result(timeout=30) for f in futures]
    assert created.count(True) == 1
    (key,) = store.iter_keys()
    assert store.check(key) is BlobStatus.OK
    assert list(store.spool_dir.iterdir()) == []


def test_large_document_streams_with_flat_memory(store: FileStore) -> None:
    size = 50 * 1024 * 1024
    path = store.spool_dir / "large"
    block = os.urandom(1024 * 1024)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(size // len(block)):
            chunk = i.to_bytes(8, "big") + block[8:]
            h.update(chunk)
            f.write(chunk)
    key = h.hexdigest()

    tracemalloc.start()
    try:
        blob = store.put_file(path, key)
        seen = hashlib.sha256()
        total = 0
        with store.open(key) as reader:
            for chunk in reader.iter_chunks():
                seen.update(chunk)
                total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert blob.size == size and total == size
    assert seen.hexdigest() == key
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte document"


def test_open_store_urls(tmp_path: Path) -> None:
    s = open_store((tmp_path / "docs").as_uri())
    assert isinstance(s, FileStore) and s.root == tmp_path / "docs"
    s = open_store(f"file://localhost{tmp_path}/with%20space")
    assert isinstance(s, FileStore) and s.root == tmp_path / "with space"
    for bad in (
        "file://otherhost/var/store",
        "file:relative/path",
        "http://example.org/store",
        "/var/store",
        "",
    ):
        with pytest.raises(ValueError):
            open_store(bad)


def test_racing_put_that_loses_the_link_reports_not_created(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer links the name between our dedupe check and our link."""
    data = os.urandom(4096)
    store.put_bytes(data)
    monkeypatch.setattr(store, "_intact", lambda key: False)
    path, key = spool(store, data)
    assert store.put_file(path, key).created is False
    assert not path.exists()
    assert store.check(key) is BlobStatus.OK
