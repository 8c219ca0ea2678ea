"""The content-addressed document store: document bytes kept under their SHA-256.

Why content addressing (DESIGN.md, "Content addressing" and "Atomicity"): ITI-41 makes the bytes
durable *before* the metadata transaction, so a retried or failed submission must never be able to
damage what is stored. A blob's name is the hash of its bytes, blobs are written once through a
temporary file and ``os.link`` (which never replaces an existing name), and a second submission of
the same bytes finds them already there. An orphan left by a failed transaction is harmless and
collected later by the garbage collector, which walks :meth:`DocumentStore.iter_keys`.

Reading is where the store earns trust: :meth:`DocumentStore.open` hashes the whole blob *before*
returning a reader, so no wrong byte is ever sent. Verifying while streaming would be cheaper
(one pass instead of two), but a mismatch is then only discovered after the last chunk, when the
wrong bytes are already on the wire and the only remedy is to cut the connection; an ITI-43
client may well have consumed the partial document by then. The second pass costs little in
practice: the first pass leaves the blob in the page cache, and SHA-256 runs at about
1.5 GB/s here (SHA-NI), i.e. ~13 µs for a typical 20 KB document and ~35 ms for 50 MB.

Two backends implement :class:`DocumentStore`: :class:`FileStore` (default, one filesystem) and
``S3Store`` in :mod:`dmp_xds.repository.s3store` (S3-compatible object storage, for several
nodes). :func:`open_store` picks one from the ``DMP_XDS_STORE_URL``.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

CHUNK = 65536
"""Read size for hashing and streaming: large enough for throughput, small for memory."""

_KEY = re.compile(r"\A[0-9a-f]{64}\Z")
_BLOB_MODE = 0o440
"""Blobs are never rewritten, so nobody needs write permission; this also guards against a
stray ``open(path, "w")`` by an operator or a bug (root still bypasses it)."""


def validate_key(key: object) -> str:
    """Return ``key`` if it is a SHA-256 in lower-case hex, else raise ValueError.

    Keys become path components and object names: accepting anything else would open path
    traversal (``../``) and aliasing (upper-case hex naming a second copy of the same blob).
    """
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(f"not a SHA-256 key (64 lower-case hex digits): {key!r:.80}")
    return key


def blob_path(key: str) -> str:
    """The relative location of a blob, shared by both backends: ``sha256/ab/cd/<hex>``.

    Two levels of 256-way fan-out keep directories below ~2 000 entries at 100 M documents.
    """
    validate_key(key)
    return f"sha256/{key[0:2]}/{key[2:4]}/{key}"


class CorruptDocument(Exception):
    """The stored bytes do not hash to their key (bit rot, truncation, tampering).

    Raised *before* any byte is handed out; the repository answers XDSRepositoryError and logs it.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"stored document {key} is corrupt: {reason}")
        self.key = key
        self.reason = reason


class MissingDocument(Exception):
    """No blob under this key although the registry references it."""

    def __init__(self, key: str) -> None:
        super().__init__(f"stored document {key} is missing")
        self.key = key


class HashMismatch(ValueError):
    """``put_file`` was given a SHA-256 that is not the hash of the file's bytes.

    This is a programming error upstream (the SOAP layer hashes what it writes), but storing the
    file anyway would be permanent damage: the blob would be unreadable, and worse, every later
    correct submission of the content named by that key would be deduplicated against it.
    """

    def __init__(self, claimed: str, actual: str) -> None:
        super().__init__(f"file content hashes to {actual}, not to the claimed {claimed}")
        self.claimed = claimed
        self.actual = actual


class BlobStatus(enum.Enum):
    """Result of :meth:`DocumentStore.check`, for ``dmp-xds verify`` and monitoring."""

    OK = "ok"
    MISSING = "missing"
    CORRUPT = "corrupt"


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """One stored blob as a listing sees it, for ``dmp-xds gc`` and ``verify``.

    ``modified`` (POSIX time of the last write: file mtime, S3 LastModified) is what the garbage
    collector's grace period is measured against; listing it costs nothing extra on either
    backend (one ``stat`` per blob, or a field of the S3 listing).
    """

    key: str
    size: int
    modified: float


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """What a put did: the key, the size, and whether these bytes were new to the store."""

    sha256: str
    size: int
    created: bool


class VerifiedReader:
    """A blob whose bytes were hashed and found equal to their key, ready to be streamed.

    It holds the very file descriptor that was verified: a concurrent ``delete`` or a repair
    (which replaces the name, never the inode's bytes) cannot change what this reader serves.
    Both backends produce one: :class:`FileStore` over the blob itself, the S3 backend over an
    anonymous local spool file holding the downloaded, verified object.
    """

    def __init__(self, key: str, fileobj: IO[bytes], size: int) -> None:
        self.key = key
        self.size = size
        self._file = fileobj

    def iter_chunks(self, chunk: int = CHUNK) -> Iterator[bytes]:
        """Yield the bytes from the start, ``chunk`` at a time (memory stays flat).

        Counts what it reads: a blob shortened after verification raises CorruptDocument rather
        than silently serving fewer bytes than the announced size.
        """
        self._file.seek(0)
        left = self.size
        while left > 0:
            data = self._file.read(min(chunk, left))
            if not data:
                raise CorruptDocument(self.key, "shortened while being served")
            left -= len(data)
            yield data

    def read_all(self) -> bytes:
        """The whole blob in memory: for small documents and tests only."""
        return b"".join(self.iter_chunks(max(CHUNK, self.size)))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> VerifiedReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def verify_open_file(key: str, fileobj: IO[bytes]) -> VerifiedReader:
    """Hash an open blob from its start and wrap it in a reader, or raise CorruptDocument.

    ``hashlib.file_digest`` reads into one reusable buffer, so memory stays flat whatever the
    size. On failure the file is closed.
    """
    try:
        fileobj.seek(0)
        digest = hashlib.file_digest(fileobj, "sha256")
        size = fileobj.tell()
    except BaseException:
        fileobj.close()
        raise
    actual = digest.hexdigest()
    if actual != key:
        fileobj.close()
        raise CorruptDocument(key, f"{size} bytes hash to {actual}")
    return VerifiedReader(key, fileobj, size)


@runtime_checkable
class DocumentStore(Protocol):
    """What the repository needs from a store; :class:`FileStore` and ``S3Store`` implement it."""

    spool_dir: Path
    """Where the SOAP layer writes incoming attachments. For :class:`FileStore` it is on the
    store's filesystem, so that ``put_file`` links the spooled file into place without a copy."""

    def put_file(self, path: Path, sha256: str) -> StoredBlob:
        """Store a fully written file whose SHA-256 the caller computed; the file is consumed.

        On success ``path`` no longer exists (moved into the store or, when the bytes were already
        stored, removed). On any error it is left for the caller, who owns its spool clean-up.
        Raises :class:`HashMismatch` if the bytes do not hash to ``sha256``.
        """
        ...

    def put_bytes(self, data: bytes) -> StoredBlob:
        """Store bytes held in memory (small documents, tools, tests)."""
        ...

    def open(self, sha256: str) -> VerifiedReader:
        """Return a reader over the blob once its bytes are verified.

        Raises :class:`MissingDocument` or :class:`CorruptDocument`.
        """
        ...

    def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under the key (not whether it is intact: see ``check``)."""
        ...

    def delete(self, sha256: str) -> bool:
        """Remove a blob (`dmp-xds gc`, which also collects what ITI-62 leaves unreferenced);
        False if it was absent."""
        ...

    def iter_keys(self) -> Iterator[str]:
        """Every stored key, for the garbage collector and ``verify``."""
        ...

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob with its size and last write time, in key order."""
        ...

    def check(self, sha256: str) -> BlobStatus:
        """Hash a blob and say whether it is intact, missing or corrupt."""
        ...

    def clean_spool(self, older_than_s: float) -> int:
        """Remove spool files older than ``older_than_s`` (left by crashed requests)."""
        ...


def blob_status(store: DocumentStore, sha256: str) -> BlobStatus:
    """Whether a blob is intact, missing or corrupt, by opening it (which verifies it)."""
    try:
        store.open(sha256).close()
    except MissingDocument:
        return BlobStatus.MISSING
    except CorruptDocument:
        return BlobStatus.CORRUPT
    return BlobStatus.OK


def _fsync_dir(path: Path) -> None:
    """Make a directory's entries (a new link, a removed name, a new subdirectory) durable.

    ``fsync`` of a file does not persist the name pointing at it; after a crash the blob could
    be gone although the registry committed a reference to it.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore:
    """Content-addressed blobs in one directory tree (the default backend).

    Layout::

        root/tmp/                       spool: SOAP attachments and put_bytes temp files
        root/sha256/ab/cd/<64 hex>      the blobs, mode 0440, never rewritten

    ``tmp`` must stay on the same filesystem as ``sha256`` for ``os.link`` to work; a file
    spooled elsewhere is copied in (slower, still correct).

    Write path (``put_file``): hash the temp file while reading it once (see below), ``fchmod``
    0440, ``fsync`` it, ``os.link`` it to its final name (atomic, and it refuses to replace an
    existing name: ``FileExistsError`` means the bytes are already stored), unlink the temp name,
    ``fsync`` the fan-out directory (and the parents of directories created for this blob).

    Re-hashing on put: the SOAP layer already hashed the bytes as it wrote them, so re-hashing
    looks redundant, but it is not a second disk read: the file was just written and sits in the
    page cache, and ``fsync`` must be paid anyway. It costs a few percent of a durable put (CPU
    only: ~13 µs for 20 KB against ~0.9 ms for the fsyncs). What it prevents is permanent: a blob
    stored under a wrong key is unreadable, and every later correct submission of the content
    that key names would be deduplicated against it and lost. So the store trusts no caller.

    When the name already exists (dedupe), the existing blob is verified too, and replaced with
    the verified new bytes (``os.replace``, atomic) if it turns out corrupt: a resubmission then
    heals the store instead of being reported as stored while the stored copy is broken.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "sha256"
        self.spool_dir = self.root / "tmp"
        for directory in (self.root, self.blobs, self.spool_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r})"

    def path_of(self, sha256: str) -> Path:
        """Where a blob lives (tools, tests); validates the key."""
        return self.root / blob_path(sha256)

    # -- writing -------------------------------------------------------------------------------

    def put_file(self, path: Path, sha256: str) -> StoredBlob:
        validate_key(sha256)
        path = Path(path)
        with open(path, "rb") as f:
            actual = hashlib.file_digest(f, "sha256").hexdigest()
            size = f.tell()
            if actual != sha256:
                raise HashMismatch(sha256, actual)
            if self._intact(sha256):  # a retry: skip the fsync and the link
                path.unlink()
                return StoredBlob(sha256, size, created=False)
            os.fchmod(f.fileno(), _BLOB_MODE)
            os.fsync(f.fileno())
        try:
            return self._link_into_place(path, sha256, size)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        # Spooled on another filesystem: copy into our spool, then link as usual.
        local = self._copy_to_spool(path)
        try:
            blob = self._link_into_place(local, sha256, size)
        finally:
            local.unlink(missing_ok=True)
        path.unlink()
        return blob

    def put_bytes(self, data: bytes) -> StoredBlob:
        key = hashlib.sha256(data).hexdigest()
        if self._intact(key):
            return StoredBlob(key, len(data), created=False)
        fd, name = tempfile.mkstemp(dir=self.spool_dir, prefix="put-")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), _BLOB_MODE)
                os.fsync(f.fileno())
            return self._link_into_place(tmp, key, len(data))
        finally:
            tmp.unlink(missing_ok=True)

    def _intact(self, key: str) -> bool:
        """Whether a verified copy is already stored: dedupe before paying for an fsync."""
        return self.path_of(key).is_file() and self.check(key) is BlobStatus.OK

    def _copy_to_spool(self, source: Path) -> Path:
        fd, name = tempfile.mkstemp(dir=self.spool_dir, prefix="copy-")
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out, CHUNK)
            out.flush()
            os.fchmod(out.fileno(), _BLOB_MODE)
            os.fsync(out.fileno())
        return Path(name)

    def _link_into_place(self, tmp: Path, key: str, size: int) -> StoredBlob:
        """Give a verified, fsynced temp file its final name; never overwrite a good blob."""
        final = self.path_of(key)
        self._ensure_fanout(final.parent)
        try:
            os.link(tmp, final)
        except FileExistsError:
            created = self._heal_if_corrupt(tmp, final, key)
        else:
            created = True
        tmp.unlink(missing_ok=True)  # already gone if it healed a corrupt blob
        if created:
            _fsync_dir(final.parent)
        return StoredBlob(key, size, created)

    def _heal_if_corrupt(self, tmp: Path, final: Path, key: str) -> bool:
        """Verify a blob already stored under ``key``; replace it by ``tmp`` if corrupt.

        Returns whether bytes were written. Concurrent puts of the same content are safe: a name
        only ever appears through ``link`` of a complete, fsynced file.
        """
        status = self.check(key)
        if status is BlobStatus.OK:
            return False
        if status is BlobStatus.MISSING:  # deleted meanwhile: store it rather than report a ghost
            try:
                os.link(tmp, final)
            except FileExistsError:  # and re-created by a concurrent put: both are good
                return False
            return True
        log.warning("replacing corrupt stored document with verified bytes", extra={"sha256": key})
        # Atomic for readers: they see the old inode or the new one, never a missing name.
        os.replace(tmp, final)
        return True

    def _ensure_fanout(self, directory: Path) -> None:
        """Create ``sha256/ab/cd`` if needed, fsyncing each parent that gained an entry."""
        if directory.is_dir():
            return
        to_sync = []
        for level in (directory.parent, directory):
            try:
                level.mkdir()
            except FileExistsError:
                continue
            to_sync.append(level.parent)
        for parent in to_sync:
            _fsync_dir(parent)

    # -- reading -------------------------------------------------------------------------------

    def open(self, sha256: str) -> VerifiedReader:
        path = self.path_of(sha256)
        try:
            f = open(path, "rb")  # noqa: SIM115 - handed to the reader, which closes it
        except FileNotFoundError:
            raise MissingDocument(sha256) from None
        return verify_open_file(sha256, f)

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def check(self, sha256: str) -> BlobStatus:
        return blob_status(self, sha256)

    def iter_keys(self) -> Iterator[str]:
        """Keys in sorted order; entries that are not well-formed blobs are skipped."""
        for first in _sorted_dirs(self.blobs, 2):
            for second in _sorted_dirs(first, 2):
                prefix = first.name + second.name
                with os.scandir(second) as entries:
                    names = sorted(e.name for e in entries if e.is_file(follow_symlinks=False))
                for name in names:
                    if _KEY.match(name) and name.startswith(prefix):
                        yield name

    def iter_blobs(self) -> Iterator[BlobInfo]:
        for key in self.iter_keys():
            try:
                st = os.stat(self.path_of(key), follow_symlinks=False)
            except FileNotFoundError:  # deleted since it was listed
                continue
            yield BlobInfo(key, st.st_size, st.st_mtime)

    # -- removing ------------------------------------------------------------------------------

    def delete(self, sha256: str) -> bool:
        """Unlink a blob and make the removal durable.

        Fan-out directories are kept: removing one could race a concurrent put that has just
        created it and is about to link into it.
        """
        path = self.path_of(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def clean_spool(self, older_than_s: float) -> int:
        return clean_spool_dir(self.spool_dir, older_than_s)


def clean_spool_dir(spool_dir: Path, older_than_s: float) -> int:
    """Remove files of ``spool_dir`` untouched for ``older_than_s`` seconds; return how many.

    A crash or a killed worker leaves its spooled attachments behind. The age must exceed the
    longest request (a slow 256 MB upload) so that no live request loses its file.
    """
    limit = time.time() - older_than_s
    removed = 0
    with os.scandir(spool_dir) as entries:
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_mtime < limit:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


def _sorted_dirs(parent: Path, width: int) -> list[Path]:
    """Fan-out subdirectories (``width`` lower-case hex characters), sorted."""
    try:
        with os.scandir(parent) as entries:
            return sorted(
                Path(e.path)
                for e in entries
                if len(e.name) == width
                and all(c in "0123456789abcdef" for c in e.name)
                and e.is_dir(follow_symlinks=False)
            )
    except FileNotFoundError:
        return []


def open_store(url: str) -> DocumentStore:
    """Build the store named by ``DMP_XDS_STORE_URL``.

    ``file:///abs/path`` is a :class:`FileStore`; ``s3://bucket/prefix`` an S3 store (boto3 is
    then required: ``pip install dmp-xds[s3]``). Anything else is refused rather than guessed.
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file store URL must be file:///absolute/path, got {url!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"file store URL takes no query or fragment: {url!r}")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError(f"file store URL must name an absolute path, got {url!r}")
        return FileStore(Path(path))
    if parts.scheme == "s3":
        from .s3store import S3Store  # optional dependency: imported only when asked for

        return S3Store.from_url(url)
    raise ValueError(f"unsupported document store URL {url!r}: use file:///path or s3://bucket")
