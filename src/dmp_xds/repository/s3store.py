"""The S3-compatible backend of the document store (``s3://bucket/prefix``), for several nodes.

Same contract as :class:`~dmp_xds.repository.store.FileStore`, with the object store doing what
``os.link`` does on a filesystem:

* **Write once.** Every write is conditional, ``If-None-Match: *`` (S3 conditional writes,
  2024): a second write of an existing key fails with 412 PreconditionFailed, which means the
  bytes are already stored (dedupe; a retried ITI-41 uploads nothing new). Nothing is ever
  overwritten, except a stored object proven corrupt by its own hash (see *healing*).
* **Checked transfer.** A single PUT carries ``ChecksumSHA256`` (the key itself, in base64): the
  server recomputes it and refuses a mismatch with 400 BadDigest, so bytes damaged or changed on
  the way are never stored. We hash the file first as well (page cache, ~13 µs for 20 KB), because
  some S3-compatible servers (moto, for one) accept a wrong checksum silently.
* **Large documents** (above ``multipart_threshold``, 16 MB) go up in parts, each with its own
  ``ChecksumSHA256`` verified by the server, while we hash the whole file on the way; the upload
  is completed (with ``If-None-Match: *``) only if that hash equals the key, else aborted: nothing
  becomes visible before the whole content is proven. One part is held in memory at a time.
* **Verified reads.** ``open`` downloads the object into a local spool file (memory up to 1 MB,
  then disk), hashing as it goes, and returns a reader only if the hash equals the key: no wrong
  byte is ever served, and a mismatch costs no half-sent document.
* **Client configuration.** boto3 ≥ 1.36 adds CRC32 checksum headers to every request by default,
  which many S3-compatible servers refuse (boto3 #4392); the client is built with
  ``request_checksum_calculation='when_required'`` and ``response_checksum_validation=
  'when_required'`` and we send our own SHA-256 instead.

boto3 is an optional dependency (``pip install 'dmp-xds[s3]'``), imported only for ``s3://``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from .store import (
    CHUNK,
    BlobInfo,
    BlobStatus,
    CorruptDocument,
    HashMismatch,
    MissingDocument,
    StoredBlob,
    VerifiedReader,
    blob_path,
    blob_status,
    clean_spool_dir,
    validate_key,
)

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("the s3:// document store needs boto3: pip install 'dmp-xds[s3]'") from exc

log = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 16 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024
"""S3 parts must be at least 5 MiB (except the last); 16 MiB keeps a 256 MB document at 16
parts while bounding the memory of one upload to one part."""
_MEMORY_SPOOL = 1024 * 1024
"""Downloads up to this size stay in memory; larger ones spill to the spool directory."""


class S3StoreError(Exception):
    """The object store refused or failed a request; ``code`` is the S3 error code if any.

    ``BadDigest`` on a write means the bytes that reached the server do not hash to the key:
    nothing was stored, and the submission fails rather than keep unverified bytes.
    """

    def __init__(self, operation: str, key: str, code: str, message: str) -> None:
        super().__init__(f"S3 {operation} of {key} failed: {code}: {message}")
        self.operation = operation
        self.key = key
        self.code = code


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _b64(hex_digest: str) -> str:
    """S3 wants checksums as base64 of the raw digest; our keys are hex."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def make_client(
    endpoint_url: str | None = None,
    region: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Any:
    """An S3 client configured for S3-compatible servers.

    The endpoint comes from the argument, else ``DMP_XDS_S3_ENDPOINT_URL``, else the standard
    ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``; the region from ``AWS_REGION`` or
    ``AWS_DEFAULT_REGION`` (``us-east-1`` if unset, which S3-compatible servers accept);
    credentials through boto3's usual chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``,
    profiles, instance roles). With a custom endpoint, path-style addressing is used: most
    S3-compatible servers do not serve bucket subdomains.
    """
    env = os.environ if env is None else env
    endpoint_url = (
        endpoint_url
        or env.get("DMP_XDS_S3_ENDPOINT_URL")
        or env.get("AWS_ENDPOINT_URL_S3")
        or env.get("AWS_ENDPOINT_URL")
        or None
    )
    region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


class S3Store:
    """Content-addressed blobs in an S3 bucket under ``<prefix>/sha256/ab/cd/<hex>``.

    ``client`` is a boto3 S3 client (see :func:`make_client`); boto3 clients are thread-safe,
    and each worker process builds its own store after forking. ``spool_dir`` is a local folder
    for incoming attachments and large downloads (default: ``<tmp>/dmp-xds-spool``).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: Any,
        *,
        spool_dir: Path | None = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
    ) -> None:
        if not bucket:
            raise ValueError("S3 store needs a bucket name")
        if part_size < 5 * 1024 * 1024:
            raise ValueError("S3 parts must be at least 5 MiB")
        self.bucket = bucket
        prefix = prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.client = client
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.spool_dir = Path(spool_dir or Path(tempfile.gettempdir()) / "dmp-xds-spool")
        self.spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        client: Any | None = None,
        env: Mapping[str, str] | None = None,
    ) -> S3Store:
        """``s3://bucket/optional/prefix``; the spool folder from ``DMP_XDS_S3_SPOOL_DIR``."""
        env = os.environ if env is None else env
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"S3 store URL must be s3://bucket[/prefix], got {url!r}")
        spool = env.get("DMP_XDS_S3_SPOOL_DIR")
        return cls(
            parts.netloc,
            parts.path,
            client if client is not None else make_client(env=env),
            spool_dir=Path(spool) if spool else None,
        )

    def __repr__(self) -> str:
        return f"S3Store(s3://{self.bucket}/{self.prefix})"

    def object_key(self, sha256: str) -> str:
        """The S3 object name of a blob; validates the key."""
        return self.prefix + blob_path(sha256)

    # -- writing -------------------------------------------------------------------------------

    def put_file(self, path: Path, sha256: str) -> StoredBlob:
        validate_key(sha256)
        path = Path(path)
        size = path.stat().st_size
        if size > self.multipart_threshold:
            if self._trusted_copy(sha256, size):  # a retry: do not upload 16+ MB again
                path.unlink()
                return StoredBlob(sha256, size, created=False)
            with open(path, "rb") as f:
                created = self._put_multipart(f, sha256, size)
        else:
            actual = _sha256_of_file(path)
            if actual != sha256:
                raise HashMismatch(sha256, actual)
            with open(path, "rb") as f:
                created = self._put_single(f, sha256, size)
        path.unlink()
        return StoredBlob(sha256, size, created)

    def put_bytes(self, data: bytes) -> StoredBlob:
        key = hashlib.sha256(data).hexdigest()
        body = io.BytesIO(data)
        if len(data) > self.multipart_threshold:
            if self._trusted_copy(key, len(data)):
                return StoredBlob(key, len(data), created=False)
            created = self._put_multipart(body, key, len(data))
        else:
            created = self._put_single(body, key, len(data))
        return StoredBlob(key, len(data), created)

    def _put_single(self, body: IO[bytes], key: str, size: int, *, retry: bool = True) -> bool:
        """Conditional PUT with the SHA-256 for the server to check; False if already stored."""
        try:
            self._put_object(body, key, size, conditional=True)
        except ClientError as exc:
            if _error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                return self._after_precondition_failed(body, key, size, retry=retry)
            raise S3StoreError("put", key, _error_code(exc), str(exc)) from exc
        except BotoCoreError as exc:
            raise S3StoreError("put", key, type(exc).__name__, str(exc)) from exc
        return True

    def _put_object(self, body: IO[bytes], key: str, size: int, *, conditional: bool) -> None:
        """One PUT carrying our SHA-256 for the server to check; ``conditional`` never
        overwrites (If-None-Match)."""
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.object_key(key),
            Body=body,
            ContentLength=size,
            ContentType="application/octet-stream",
            ChecksumSHA256=_b64(key),
            **({"IfNoneMatch": "*"} if conditional else {}),
        )

    def _after_precondition_failed(
        self, body: IO[bytes], key: str, size: int, *, retry: bool
    ) -> bool:
        """The key exists (or a concurrent write holds it): dedupe, or heal a corrupt copy."""
        if self._trusted_copy(key, size):
            return False
        status = self.check(key)
        if status is BlobStatus.OK:
            return False
        body.seek(0)
        if status is BlobStatus.MISSING and retry:  # deleted, or a conflicting write lost
            return self._put_single(body, key, size, retry=False)
        if status is BlobStatus.CORRUPT:
            log.warning(
                "replacing corrupt stored document with verified bytes", extra={"sha256": key}
            )
            self._overwrite(body, key, size)
            return True
        raise S3StoreError("put", key, "PreconditionFailed", "object keeps changing")

    def _overwrite(self, body: IO[bytes], key: str, size: int) -> None:
        """Unconditional PUT, only used to replace an object proven corrupt by its hash."""
        if size > self.multipart_threshold:
            # Multipart completion without If-None-Match replaces the corrupt object.
            self._put_multipart(body, key, size, conditional=False)
            return
        try:
            self._put_object(body, key, size, conditional=False)
        except (ClientError, BotoCoreError) as exc:
            code = _error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
            raise S3StoreError("put", key, code, str(exc)) from exc

    def _put_multipart(
        self, body: IO[bytes], key: str, size: int, *, conditional: bool = True
    ) -> bool:
        """Upload in parts, each server-checked; complete only if the whole hash is the key."""
        name = self.object_key(key)
        try:
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket,
                Key=name,
                ContentType="application/octet-stream",
                ChecksumAlgorithm="SHA256",
            )["UploadId"]
        except (ClientError, BotoCoreError) as exc:
            code = _error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
            raise S3StoreError("multipart put", key, code, str(exc)) from exc
        try:
            whole = hashlib.sha256()
            parts = []
            body.seek(0)
            while True:
                chunk = body.read(self.part_size)
                if not chunk and parts:
                    break
                whole.update(chunk)
                checksum = base64.b64encode(hashlib.sha256(chunk).digest()).decode("ascii")
                number = len(parts) + 1
                answer = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                    ChecksumSHA256=checksum,
                )
                parts.append(
                    {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}
                )
                del chunk
            if whole.hexdigest() != key:
                raise HashMismatch(key, whole.hexdigest())
            extra = {"IfNoneMatch": "*"} if conditional else {}
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=name,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **extra,
            )
        except ClientError as exc:
            self._abort(name, upload_id)
            if conditional and _error_code(exc) in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                return self._after_precondition_failed(body, key, size, retry=False)
            raise S3StoreError("multipart put", key, _error_code(exc), str(exc)) from exc
        except BotoCoreError as exc:
            self._abort(name, upload_id)
            raise S3StoreError("multipart put", key, type(exc).__name__, str(exc)) from exc
        except BaseException:
            self._abort(name, upload_id)
            raise
        return True

    def _abort(self, name: str, upload_id: str) -> None:
        """Drop an unfinished upload so that its parts do not linger (and cost) in the bucket."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
        except (ClientError, BotoCoreError):
            log.warning("could not abort multipart upload", extra={"upload_id": upload_id})

    def _trusted_copy(self, key: str, size: int) -> bool:
        """Whether the stored object can be taken as the right bytes without downloading it.

        True when its size matches and either the server holds a full-object SHA-256 equal to
        the key (it checked it on upload) or it is a multipart object (each part was checked on
        upload, and we complete uploads only after hashing the whole). Anything else (an object
        written by another tool without our checksum) is downloaded and verified by the caller.
        """
        head = self._head(key, checksums=True)
        if head is None or int(head.get("ContentLength", -1)) != size:
            return False
        stored = head.get("ChecksumSHA256")
        if stored and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            return bool(stored == _b64(key))
        return bool(stored) and head.get("ChecksumType") == "COMPOSITE"

    # -- reading -------------------------------------------------------------------------------

    def _head(self, key: str, *, checksums: bool = False) -> dict[str, Any] | None:
        extra = {"ChecksumMode": "ENABLED"} if checksums else {}
        try:
            head: dict[str, Any] = self.client.head_object(
                Bucket=self.bucket, Key=self.object_key(key), **extra
            )
        except ClientError as exc:
            if _status(exc) == 404 or _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise S3StoreError("head", key, _error_code(exc), str(exc)) from exc
        except BotoCoreError as exc:
            raise S3StoreError("head", key, type(exc).__name__, str(exc)) from exc
        return head

    def open(self, sha256: str) -> VerifiedReader:
        name = self.object_key(sha256)
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise MissingDocument(sha256) from None
            raise S3StoreError("get", sha256, _error_code(exc), str(exc)) from exc
        except BotoCoreError as exc:
            raise S3StoreError("get", sha256, type(exc).__name__, str(exc)) from exc
        spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - handed to the reader
            max_size=_MEMORY_SPOOL, dir=self.spool_dir
        )
        digest = hashlib.sha256()
        size = 0
        try:
            body = answer["Body"]
            try:
                for chunk in body.iter_chunks(CHUNK):
                    digest.update(chunk)
                    spool.write(chunk)
                    size += len(chunk)
            finally:
                body.close()
        except BotoCoreError as exc:
            spool.close()
            raise S3StoreError("get", sha256, type(exc).__name__, str(exc)) from exc
        except BaseException:
            spool.close()
            raise
        if digest.hexdigest() != sha256:
            spool.close()
            raise CorruptDocument(sha256, f"{size} bytes hash to {digest.hexdigest()}")
        spool.seek(0)
        return VerifiedReader(sha256, spool, size)

    def exists(self, sha256: str) -> bool:
        validate_key(sha256)
        return self._head(sha256) is not None

    def check(self, sha256: str) -> BlobStatus:
        return blob_status(self, sha256)

    def iter_keys(self) -> Iterator[str]:
        """Keys in sorted order (S3 lists in key order); foreign objects are skipped."""
        return (blob.key for blob in self.iter_blobs())

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Keys with Size and LastModified, straight from the listing (no HEAD per object)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + "sha256/"
        )
        for page in pages:
            for item in page.get("Contents", ()):
                name = item["Key"][len(self.prefix) :]
                candidate = name.rsplit("/", 1)[-1]
                try:
                    if blob_path(candidate) != name:
                        continue
                except ValueError:
                    continue
                yield BlobInfo(candidate, int(item["Size"]), item["LastModified"].timestamp())

    # -- removing ------------------------------------------------------------------------------

    def delete(self, sha256: str) -> bool:
        """Delete an object; S3 answers 204 either way, so a HEAD tells whether it existed."""
        if self._head(sha256) is None:
            return False
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(sha256))
        except (ClientError, BotoCoreError) as exc:
            code = _error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
            raise S3StoreError("delete", sha256, code, str(exc)) from exc
        return True

    def clean_spool(self, older_than_s: float) -> int:
        return clean_spool_dir(self.spool_dir, older_than_s)


def _sha256_of_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
