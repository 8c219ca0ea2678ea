"""The documents of an import: files of a folder or members of a zip archive, and what each one
is (its metadata, hash and size, or why it cannot be sent).

Reading is streamed and bounded: a document is read once, through a reader that hashes it
(SHA-1 for XDS, SHA-256 for identifiers) and refuses to go past ``max_bytes``, which is also
what stops a zip bomb (a member's declared size is checked first, its real size while it is
read). Zip members are never extracted under their own names: a member is copied to a spool
file of ours only while its batch is being sent, so names like ``../../etc/passwd`` mean
nothing here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

from ..cda.header import NotWellFormed
from ..cda.metadata import EntryMetadata, NotCda, derive_class_code, metadata_of
from ..metadata.datatypes import parse_patient_id
from .submission import MIME_TYPE_SUFFICIENT, apply_overrides, missing_fields

SIDECAR_SUFFIX = ".meta.json"
MAX_SIDECAR_BYTES = 1024 * 1024
DEFAULT_MAX_BYTES = 256 * 1024 * 1024  # the server's default DMP_XDS_MAX_BODY_BYTES
DOCUMENT_TYPES = {
    ".xml": "text/xml",
    ".pdf": "application/pdf",
    ".txt": "text/plain",
    ".rtf": "text/rtf",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}
"""What an import sends, by file extension: CDA documents (``.xml``) and the bare formats the
DMP's XDS-SD admits. Anything else in the folder is listed as skipped."""
_CHUNK = 64 * 1024


class TooLarge(Exception):
    """A document longer than the import's limit."""


class Source(Protocol):
    """One document to import, wherever it lives."""

    name: str
    """Its path relative to the folder (or its member name in the archive), POSIX style."""
    size: int

    def open(self) -> IO[bytes]: ...

    def sidecar(self) -> bytes | None: ...

    def as_file(self) -> contextlib.AbstractContextManager[Path]: ...


@dataclass
class FileSource:
    root: Path
    path: Path
    size: int

    @property
    def name(self) -> str:
        return self.path.relative_to(self.root).as_posix()

    def open(self) -> IO[bytes]:
        return self.path.open("rb")

    def sidecar(self) -> bytes | None:
        side = self.path.with_name(self.path.name + SIDECAR_SUFFIX)
        if not side.is_file():
            return None
        if side.stat().st_size > MAX_SIDECAR_BYTES:
            raise ValueError(f"sidecar {side.name} is larger than {MAX_SIDECAR_BYTES} bytes")
        return side.read_bytes()

    @contextlib.contextmanager
    def as_file(self) -> Iterator[Path]:
        yield self.path


@dataclass
class ZipSource:
    archive: zipfile.ZipFile
    info: zipfile.ZipInfo
    sidecar_info: zipfile.ZipInfo | None
    spool: Path
    max_bytes: int

    @property
    def name(self) -> str:
        return self.info.filename

    @property
    def size(self) -> int:
        return self.info.file_size

    def open(self) -> IO[bytes]:
        return self.archive.open(self.info)

    def sidecar(self) -> bytes | None:
        if self.sidecar_info is None:
            return None
        if self.sidecar_info.file_size > MAX_SIDECAR_BYTES:
            raise ValueError(f"sidecar {self.sidecar_info.filename} is too large")
        with self.archive.open(self.sidecar_info) as f:
            return f.read(MAX_SIDECAR_BYTES + 1)[:MAX_SIDECAR_BYTES]

    @contextlib.contextmanager
    def as_file(self) -> Iterator[Path]:
        """The member copied to a spool file of ours (removed afterwards)."""
        fd, name = tempfile.mkstemp(prefix="member-", dir=self.spool)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out, self.open() as member:
                reader = Measured(member, self.max_bytes)
                shutil.copyfileobj(reader, out, _CHUNK)
            yield path
        finally:
            path.unlink(missing_ok=True)


@dataclass
class Skipped:
    """A file of the input that is not a document to import."""

    name: str
    reason: str


def _is_hidden(name: str) -> bool:
    return any(part.startswith(".") for part in PurePosixPath(name).parts)


def _classify(name: str) -> str | None:
    """Why ``name`` is not a document to import, or None if it is one."""
    if _is_hidden(name):
        return "hidden file"
    if name.endswith(SIDECAR_SUFFIX):
        return "sidecar"
    if PurePosixPath(name).suffix.lower() not in DOCUMENT_TYPES:
        return "not a document type dmp-xds imports (" + ", ".join(DOCUMENT_TYPES) + ")"
    return None


def folder_sources(root: Path) -> tuple[list[Source], list[Skipped]]:
    """Every document under ``root`` (recursively, in name order) and what was left out."""
    sources: list[Source] = []
    skipped: list[Skipped] = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file_name in sorted(files):
            path = Path(directory) / file_name
            name = path.relative_to(root).as_posix()
            reason = _classify(name)
            if reason == "sidecar" or (reason == "hidden file" and file_name.startswith(".")):
                continue  # ours (sidecars, the journal) or the system's: not worth a line
            if reason or not path.is_file():
                skipped.append(Skipped(name, reason or "not a regular file"))
                continue
            sources.append(FileSource(root, path, path.stat().st_size))
    return sources, skipped


@contextlib.contextmanager
def zip_sources(path: Path, max_bytes: int) -> Iterator[tuple[list[Source], list[Skipped]]]:
    """The documents of a zip archive; members are spooled to a private folder when sent."""
    with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory(prefix="dmp-xds-") as tmp:
        members = {i.filename: i for i in archive.infolist() if not i.is_dir()}
        sources: list[Source] = []
        skipped: list[Skipped] = []
        for name in sorted(members):
            reason = _classify(name)
            if reason == "sidecar":
                continue
            if reason:
                skipped.append(Skipped(name, reason))
                continue
            side = members.get(name + SIDECAR_SUFFIX)
            sources.append(ZipSource(archive, members[name], side, Path(tmp), max_bytes))
        yield sources, skipped


class Measured:
    """A reader that hashes what passes through it and stops at ``limit`` bytes."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.size = 0
        self.sha1 = hashlib.sha1()  # noqa: S324 - XDS mandates SHA-1
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n if n > 0 else _CHUNK)
        self.size += len(data)
        if self.size > self.limit:
            raise TooLarge(f"the document is larger than {self.limit} bytes")
        self.sha1.update(data)
        self.sha256.update(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def content_unique_id(sha256: str, patient_id: str) -> str:
    """A uniqueId for a document that carries none (a bare PDF): an OID under 2.25 made from
    its bytes and patient, so that the same file gets the same id on every run (what lets an
    interrupted import recognise what it already sent)."""
    digest = hashlib.sha256(f"{sha256}|{patient_id}".encode()).digest()
    return f"2.25.{uuid.UUID(bytes=digest[:16], version=5).int}"


@dataclass
class Prepared:
    """A document ready to send (``entry`` set) or refused before sending (``problems``)."""

    source: Source
    entry: EntryMetadata | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def unique_id(self) -> str | None:
        return self.entry.unique_id if self.entry else None

    @property
    def patient_id(self) -> str:
        assert self.entry is not None and self.entry.patient_id
        return self.entry.patient_id


def _read_sidecar(source: Source) -> dict[str, Any]:
    raw = source.sidecar()
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"sidecar {source.name}{SIDECAR_SUFFIX} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"sidecar {source.name}{SIDECAR_SUFFIX} must hold a JSON object")
    return value


def _read_entry(source: Source, max_bytes: int) -> tuple[EntryMetadata, Measured]:
    """Metadata derived from the document itself, hashing it on the way."""
    suffix = PurePosixPath(source.name).suffix.lower()
    with source.open() as stream:
        reader = Measured(stream, max_bytes)
        if suffix == ".xml":
            entry = metadata_of(reader)  # type: ignore[arg-type]
            reader.drain()
        else:
            reader.drain()
            entry = EntryMetadata(
                mime_type=DOCUMENT_TYPES[suffix],
                format_code=MIME_TYPE_SUFFICIENT,
                title=PurePosixPath(source.name).stem,
            )
    return entry, reader


def prepare(source: Source, max_bytes: int, overrides: dict[str, Any] | None = None) -> Prepared:
    """Derive ``source``'s metadata, apply its sidecar (then ``overrides``), and check that
    ITI-41 gets everything it needs. Problems are collected, never raised."""
    prepared = Prepared(source)
    if source.size > max_bytes:
        prepared.problems.append(f"the document is larger than {max_bytes} bytes")
        return prepared
    try:
        sidecar = _read_sidecar(source)
        entry, reader = _read_entry(source, max_bytes)
    except NotWellFormed as exc:
        prepared.problems.append(f"not well-formed XML: {exc}")
        return prepared
    except NotCda as exc:
        prepared.problems.append(f"not a CDA R2 document: {exc}")
        return prepared
    except (TooLarge, ValueError, OSError, zipfile.BadZipFile) as exc:
        prepared.problems.append(str(exc))
        return prepared
    entry.hash, entry.size = reader.sha1.hexdigest(), reader.size
    if entry.mime_type != "text/xml" and not sidecar and not overrides:
        prepared.problems.append(
            f"no sidecar {PurePosixPath(source.name).name}{SIDECAR_SUFFIX}: a document that is "
            "not CDA takes its metadata (patientId, typeCode, confidentialityCode, "
            "creationTime...) from it"
        )
        return prepared
    problems = apply_overrides(entry, sidecar) + apply_overrides(entry, overrides or {})
    if "classCode" not in sidecar and "classCode" not in (overrides or {}):
        derive_class_code(entry)  # from the typeCode as finally given
    if entry.patient_id:
        try:
            entry.patient_id = parse_patient_id(entry.patient_id).canonical
        except ValueError as exc:
            problems.append(str(exc))
    if entry.unique_id is None and entry.patient_id and not problems:
        entry.unique_id = content_unique_id(reader.sha256.hexdigest(), entry.patient_id)
        entry.notes.pop("uniqueId", None)
    prepared.entry = entry
    prepared.problems = problems or missing_fields(entry)
    return prepared
