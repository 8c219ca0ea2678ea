"""The import journal: what was sent, and what the server said, so that an interrupted import
resumes without sending a document twice.

One JSON object per line, appended and fsynced at two moments of every batch:

* ``{"type": "sending", "batch": ..., "documents": [{"name", "uniqueId", "sha1"}, ...]}``
  *before* the request leaves;
* ``{"type": "result", "batch": ..., "status": ..., "accepted": [uniqueId, ...]}`` once the
  answer is read (or once an unanswered batch has been looked up in the registry).

On restart, a uniqueId listed as accepted is done. A ``sending`` line without its ``result``
is a batch whose answer never arrived: it may or may not have been registered (ITI-41 is
atomic, so it is all or nothing), and the importer asks the registry before sending it again.
A torn last line (the process died while writing it) is ignored: if it was a ``sending`` line
the request had not left yet, if it was a ``result`` line the batch is simply looked up again.

The journal names documents by file name and uniqueId only: no patient identifier, no content.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


@dataclass
class SentBatch:
    """A batch the journal saw leave; ``unique_ids`` maps each uniqueId to its SHA-1."""

    batch: str
    unique_ids: dict[str, str] = field(default_factory=dict)


@dataclass
class JournalState:
    accepted: dict[str, str] = field(default_factory=dict)
    """uniqueId -> the name it was imported from."""
    in_doubt: list[SentBatch] = field(default_factory=list)
    """Batches sent without a recorded answer."""


def load(path: Path) -> JournalState:
    """What a previous run recorded (an empty state when there is no journal yet)."""
    state = JournalState()
    if not path.exists():
        return state
    sent: dict[str, SentBatch] = {}
    names: dict[str, str] = {}
    answered: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line
            if not isinstance(record, dict):
                continue
            batch = str(record.get("batch", ""))
            if record.get("type") == "sending":
                documents = record.get("documents") or []
                sent[batch] = SentBatch(
                    batch, {d["uniqueId"]: d.get("sha1", "") for d in documents}
                )
                names.update((d["uniqueId"], d.get("name", "")) for d in documents)
            elif record.get("type") == "result":
                answered.add(batch)
                for unique_id in record.get("accepted") or []:
                    state.accepted[unique_id] = names.get(unique_id, "")
    state.in_doubt = [b for batch, b in sent.items() if batch not in answered]
    return state


class Journal:
    """Appends records to the journal file, each one durable before the call returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        created = not path.exists()
        torn = not created and _ends_torn(path)
        self._file: IO[str] = path.open("a", encoding="utf-8")
        try:  # one import per journal: two would each send what the other is sending
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            raise ValueError(f"another import is using the journal {path}") from None
        if created:
            _fsync_dir(path.parent)
        if torn:  # end the torn line, or the next record would be glued to it
            self._file.write("\n")

    def close(self) -> None:
        self._file.close()

    def _append(self, record: dict[str, Any]) -> None:
        record["at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def sending(self, batch: str, documents: Iterable[tuple[str, str, str]]) -> None:
        """Before a batch leaves: its documents as (name, uniqueId, sha1)."""
        self._append(
            {
                "type": "sending",
                "batch": batch,
                "documents": [
                    {"name": name, "uniqueId": unique_id, "sha1": sha1}
                    for name, unique_id, sha1 in documents
                ],
            }
        )

    def result(self, batch: str, status: str, accepted: Iterable[str] = ()) -> None:
        """Once a batch's fate is known: the uniqueIds now in the registry."""
        self._append(
            {"type": "result", "batch": batch, "status": status, "accepted": list(accepted)}
        )


def _ends_torn(path: Path) -> bool:
    """Whether the file's last line lacks its newline (a write cut short)."""
    with path.open("rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def _fsync_dir(directory: Path) -> None:
    """Make a new file's directory entry durable (POSIX; a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
