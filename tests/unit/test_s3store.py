"""The S3 backend against a real S3-compatible server on loopback (ministack), no mocks.

ministack (PyPI, MIT) pins its own botocore, so it lives in a virtualenv of its own, created on
first use under ``~/.cache/dmp-xds/ministack-venv`` (``XDG_CACHE_HOME`` honoured) and started as
a subprocess bound to 127.0.0.1 on a free port. Set ``DMP_XDS_TEST_S3_ENDPOINT_URL`` to run the
same tests against another server (SeaweedFS, Garage, a cloud bucket) instead; the bucket named
by ``DMP_XDS_TEST_S3_BUCKET`` (default ``dmp-xds-test``) is created if missing. Each test works
under its own prefix, so tests share one server and one bucket.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import tracemalloc
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3", reason="the S3 backend needs boto3 (pip install 'dmp-xds[s3]')")

from dmp_xds.repository.s3store import S3Store, S3StoreError, make_client
from dmp_xds.repository.store import (
    BlobStatus,
    CorruptDocument,
    DocumentStore,
    HashMismatch,
    MissingDocument,
    StoredBlob,
    open_store,
)

MINISTACK = "ministack==1.5.33"
MIB = 1024 * 1024


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dmp-xds"


def _ministack_python() -> Path:
    """The interpreter of the ministack virtualenv, built once and reused (locked: xdist-safe)."""
    venv = _cache_dir() / "ministack-venv"
    python = venv / "bin" / "python"
    ready = venv / ".dmp-xds-ready"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / "ministack-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists() and ready.read_text(encoding="utf-8").strip() == MINISTACK:
            return python
        shutil.rmtree(venv, ignore_errors=True)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", MINISTACK],
            capture_output=True,
            text=True,
            check=False,
        )
        if pip.returncode != 0:
            pytest.skip(f"cannot install {MINISTACK}: {pip.stderr.strip()[-500:]}")
        ready.write_text(MINISTACK, encoding="utf-8")
        print(f"created {venv} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return python


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_ministack(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    python = _ministack_python()
    port = _free_port()
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "BIND_HOST": "127.0.0.1",  # not MINISTACK_HOST, which is only a virtual host name
        "SERVICES": "s3",
        "S3_PERSIST": "0",
        "LOG_LEVEL": "WARNING",
        "TMPDIR": str(tmp),  # its pid file goes there, not to /tmp
    }
    log = open(tmp / "ministack.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [str(python), "-m", "ministack"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = (tmp / "ministack.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"ministack exited with {proc.returncode}:\n{output}")
        try:
            with urllib.request.urlopen(endpoint + "/_ministack/health", timeout=1) as answer:  # noqa: S310
                if answer.status == 200:
                    return proc, endpoint
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("ministack did not answer within 30 s")


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("DMP_XDS_TEST_S3_ENDPOINT_URL")
    if external:
        yield external
        return
    proc, endpoint = _start_ministack(tmp_path_factory.mktemp("ministack"))
    try:
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def credentials() -> Iterator[None]:
    """ministack accepts any credentials, but boto3 refuses to sign without some."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            if not os.environ.get(name):
                mp.setenv(name, "test")
        yield


@pytest.fixture(scope="module")
def raw(s3_endpoint: str, credentials: None) -> Any:
    """The client the stores use, also for arranging and inspecting the bucket behind them."""
    return make_client(s3_endpoint)


@pytest.fixture(scope="module")
def bucket(raw: Any) -> str:
    name = os.environ.get("DMP_XDS_TEST_S3_BUCKET", "dmp-xds-test")
    try:
        raw.head_bucket(Bucket=name)
    except Exception:
        raw.create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(raw: Any, bucket: str, tmp_path: Path) -> S3Store:
    # Small parts keep the multipart tests quick; production uses 16 MiB.
    return S3Store(
        bucket,
        f"test/{uuid.uuid4().hex}",
        raw,
        spool_dir=tmp_path / "spool",
        multipart_threshold=8 * MIB,
        part_size=5 * MIB,
    )


def spool(store: S3Store, data: bytes, name: str = "part") -> tuple[Path, str]:
    path = store.spool_dir / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def put_raw(store: S3Store, key: str, data: bytes) -> None:
    """Write bytes under a blob's name as another tool would: no checksum, no condition."""
    store.client.put_object(Bucket=store.bucket, Key=store.object_key(key), Body=data)


def test_implements_protocol(store: S3Store) -> None:
    assert isinstance(store, DocumentStore)


def test_put_file_round_trip(store: S3Store) -> None:
    data = os.urandom(20_000)
    path, key = spool(store, data)
    assert store.put_file(path, key) == StoredBlob(key, len(data), created=True)
    assert not path.exists()
    head = store.client.head_object(
        Bucket=store.bucket, Key=store.object_key(key), ChecksumMode="ENABLED"
    )
    assert store.object_key(key).endswith(f"/sha256/{key[:2]}/{key[2:4]}/{key}")
    assert head["ContentLength"] == len(data)
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(key)).decode()
    with store.open(key) as reader:
        assert reader.size == len(data)
        assert reader.read_all() == data
        assert b"".join(reader.iter_chunks(999)) == data
    assert store.exists(key)
    assert list(store.spool_dir.iterdir()) == []


def test_put_bytes_and_dedupe_by_if_none_match(store: S3Store) -> None:
    data = b"<ClinicalDocument/>" * 100
    first = store.put_bytes(data)
    second = store.put_bytes(data)
    path, key = spool(store, data)
    third = store.put_file(path, key)
    assert (first.created, second.created, third.created) == (True, False, False)
    assert not path.exists()
    assert list(store.iter_keys()) == [key]


def test_if_none_match_is_what_refuses_the_second_write(store: S3Store) -> None:
    """The server itself, not a prior HEAD of ours, enforces write-once."""
    blob = store.put_bytes(b"write once")
    with pytest.raises(store.client.exceptions.ClientError) as info:
        store.client.put_object(
            Bucket=store.bucket, Key=store.object_key(blob.sha256), Body=b"x", IfNoneMatch="*"
        )
    assert info.value.response["Error"]["Code"] == "PreconditionFailed"
    with store.open(blob.sha256) as reader:
        assert reader.read_all() == b"write once"


def test_wrong_claimed_hash_is_refused_before_upload(store: S3Store) -> None:
    path, _ = spool(store, b"real content")
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(HashMismatch):
        store.put_file(path, wrong)
    assert path.exists()
    assert not store.exists(wrong)


def test_server_bad_digest_surfaces_as_an_error(
    store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes that change between our hash and the upload: the server's check catches them."""
    import dmp_xds.repository.s3store as module

    path, _ = spool(store, b"bytes as they reach the server")
    claimed = hashlib.sha256(b"bytes as we hashed them").hexdigest()
    monkeypatch.setattr(module, "_sha256_of_file", lambda p: claimed)
    with pytest.raises(S3StoreError) as info:
        store.put_file(path, claimed)
    assert info.value.code == "BadDigest"
    assert not store.exists(claimed)
    assert path.exists()


def test_corrupt_object_is_never_served_and_a_resubmission_heals_it(store: S3Store) -> None:
    data = os.urandom(30_000)
    key = hashlib.sha256(data).hexdigest()
    damaged = bytearray(data)
    damaged[12345] ^= 0xFF
    put_raw(store, key, bytes(damaged))
    with pytest.raises(CorruptDocument) as info:
        store.open(key)
    assert info.value.key == key
    assert store.check(key) is BlobStatus.CORRUPT
    assert list(store.spool_dir.iterdir()) == []
    assert store.put_bytes(data).created is True
    assert store.check(key) is BlobStatus.OK


def test_truncated_object_is_detected(store: S3Store) -> None:
    data = os.urandom(3 * MIB)  # above the in-memory spool size: spills to disk
    key = hashlib.sha256(data).hexdigest()
    put_raw(store, key, data[: 2 * MIB])
    with pytest.raises(CorruptDocument, match=f"{2 * MIB} bytes"):
        store.open(key)
    assert list(store.spool_dir.iterdir()) == []


def test_missing_object(store: S3Store) -> None:
    key = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(MissingDocument):
        store.open(key)
    assert store.check(key) is BlobStatus.MISSING
    assert not store.exists(key)


def test_delete_and_iter_keys(store: S3Store) -> None:
    keys = sorted(store.put_bytes(str(i).encode()).sha256 for i in range(12))
    store.client.put_object(Bucket=store.bucket, Key=store.prefix + "sha256/ab/notes.txt", Body=b"")
    store.client.put_object(
        Bucket=store.bucket, Key=store.prefix + f"sha256/00/00/{keys[0]}", Body=b"misplaced"
    )
    assert list(store.iter_keys()) == keys
    assert store.delete(keys[5]) is True
    assert store.delete(keys[5]) is False
    with pytest.raises(MissingDocument):
        store.open(keys[5])
    assert list(store.iter_keys()) == keys[:5] + keys[6:]


def test_bad_keys_are_rejected(store: S3Store) -> None:
    for key in ("A" * 64, "a" * 63, "../" + "a" * 61, "a" * 64 + "\n"):
        for call in (store.open, store.exists, store.delete, store.check):
            with pytest.raises(ValueError, match="not a SHA-256 key"):
                call(key)
        with pytest.raises(ValueError, match="not a SHA-256 key"):
            store.put_file(store.spool_dir / "x", key)


def _write_large(path: Path, size: int) -> str:
    block = os.urandom(MIB)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(size // MIB):
            chunk = i.to_bytes(8, "big") + block[8:]
            h.update(chunk)
            f.write(chunk)
    return h.hexdigest()


def test_large_object_multipart_put_and_streamed_read(store: S3Store) -> None:
    size = 50 * MIB
    path = store.spool_dir / "large"
    key = _write_large(path, size)
    retry = store.spool_dir / "retry"
    shutil.copyfile(path, retry)
    tracemalloc.start()
    try:
        started = time.perf_counter()
        blob = store.put_file(path, key)
        put_s = time.perf_counter() - started
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        started = time.perf_counter()
        seen = hashlib.sha256()
        with store.open(key) as reader:
            for chunk in reader.iter_chunks():
                seen.update(chunk)
        get_s = time.perf_counter() - started
        _, get_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert blob.created and blob.size == size
    assert seen.hexdigest() == key
    head = store.client.head_object(
        Bucket=store.bucket, Key=store.object_key(key), ChecksumMode="ENABLED"
    )
    assert head["ContentLength"] == size
    assert head.get("ChecksumType") == "COMPOSITE"  # per-part SHA-256 checked by the server
    # Upload holds one part (5 MiB here) and botocore's copy of it; download stays flat.
    assert put_peak < 3 * store.part_size, put_peak
    assert get_peak < 4 * MIB, get_peak
    rates = f"put {size / MIB / put_s:.0f} MiB/s, verified get {size / MIB / get_s:.0f} MiB/s"
    print(f"\n50 MiB multipart: {rates}; peaks {put_peak // 1024} KiB, {get_peak // 1024} KiB")
    # A retry of the same large document uploads nothing.
    assert store.put_file(retry, key).created is False
    assert not retry.exists()
    assert list(store.spool_dir.iterdir()) == []


def test_multipart_with_wrong_claimed_hash_completes_nothing(store: S3Store) -> None:
    path = store.spool_dir / "large"
    _write_large(path, 12 * MIB)
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(HashMismatch):
        store.put_file(path, wrong)
    assert not store.exists(wrong)
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
    assert uploads.get("Uploads", []) == [], "the failed upload was aborted"


def test_open_store_s3_url(
    s3_endpoint: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DMP_XDS_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("DMP_XDS_S3_SPOOL_DIR", str(tmp_path / "spool"))
    s = open_store(f"s3://{bucket}/via-url/{uuid.uuid4().hex}/")
    assert isinstance(s, S3Store) and s.bucket == bucket
    assert s.spool_dir == tmp_path / "spool" and s.spool_dir.is_dir()
    blob = s.put_bytes(b"configured from the environment")
    with s.open(blob.sha256) as reader:
        assert reader.read_all() == b"configured from the environment"
    for bad in ("s3://", "s3:///prefix", "s3://bucket/p?x=1"):
        with pytest.raises(ValueError):
            open_store(bad)


def test_iter_blobs_lists_size_and_last_write(store: S3Store) -> None:
    before = time.time()
    keys = sorted(store.put_bytes(b"blob %d" % i * (i + 1)).sha256 for i in range(3))
    store.client.put_object(Bucket=store.bucket, Key=store.prefix + "sha256/ab/notes.txt", Body=b"")
    blobs = list(store.iter_blobs())
    assert [b.key for b in blobs] == keys
    for blob in blobs:
        with store.open(blob.key) as reader:
            assert blob.size == reader.size
        assert before - 60 <= blob.modified <= time.time() + 60  # server clock, whole seconds


def test_gc_on_s3(store: S3Store, engine: Any) -> None:
    from dmp_xds.repository.maintenance import collect_garbage

    key = store.put_bytes(b"an orphan in the bucket").sha256
    assert collect_garbage(engine, store, grace_s=3600).removed == []
    report = collect_garbage(engine, store, grace_s=3600, now=time.time() + 3700)
    assert [b.key for b in report.removed] == [key]
    assert not store.exists(key)
