"""``dmp-xds import``: a folder (or zip) of documents into the registry, in ITI-41 batches.

Built for integration engines that drop documents in a folder: each document's metadata come
from its CDA header (:mod:`dmp_xds.cda.metadata`) and its sidecar file
(:mod:`.submission`), documents are grouped by patient (a SubmissionSet belongs to one patient,
and the VIHF of each call names that patient), and each patient's documents are sent in
submission sets of at most ``batch_size``.

**Resumable, nothing sent twice.** Every batch is written to the journal (:mod:`.journal`)
before it leaves and again once its answer is read. A rerun skips what was accepted. A batch
whose answer never came (the process was killed, the connection dropped) is looked up in the
registry with ITI-18 GetDocuments by uniqueId before anything is sent again: what landed is
counted as accepted, the rest is sent. If the registry cannot be asked (the caller may not be
allowed to read the record), sending again is still safe: the registry keeps uniqueIds unique,
and its ``XDSDuplicateUniqueIdInRegistry`` for a document in doubt means it had landed (we
send the document's hash, so different content would be answered ``XDSNonIdenticalHash``).

**A rejected document does not hold the others back.** ITI-41 is all or nothing, so one bad
document fails its whole batch. The server names each problem's object in the error
``location`` (``DocumentEntry Document0007 / patientId``), with the symbolic ids we chose, so
the documents named there are rejected with their errors and the others are sent again as one
batch: one more round trip whatever the batch size, where sending singly would cost one per
document. Only when no error names a document (a problem of the patient's record, say) does
the importer send one document alone: if it fails the same way the problem is the patient's and
the rest is rejected with it, otherwise the rest goes one by one.

Transient trouble (no answer, a Receiver fault, ``XDSRegistryBusy``...) is retried with a
growing pause; a caller the server does not accept (a WS-Security fault) stops the run, since
every other call would fail the same way. Either way a rerun picks up where this one stopped.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import sys
import time
import uuid
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

from ..metadata import vocabulary as v
from ..metadata.ebrim import slot_values
from ..namespaces import RIM
from .identity import Identity
from .journal import Journal, JournalState
from .sources import Prepared, Skipped, TooLarge
from .submission import SubmissionSetSpec, submit_objects_request
from .transport import ClientError
from .xds import RegistryErrorInfo, SoapFaultError, XdsClient

DEFAULT_BATCH_SIZE = 100
WSSE_NAMESPACE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
DUPLICATE = "XDSDuplicateUniqueIdInRegistry"
TRANSIENT = frozenset(
    {
        "XDSRegistryBusy",
        "XDSRepositoryBusy",
        "XDSRegistryNotAvailable",
        "XDSRegistryOutOfResources",
        "XDSRepositoryOutOfResources",
    }
)
"""Error codes that mean "not now": nothing was written, the same request may succeed later."""
_DOC_ID = re.compile(r"\bDocument(\d{4,})\b")


class Aborted(Exception):
    """The run cannot go on (the server refuses our credentials, or stays unreachable)."""


class _InDoubt(Exception):
    """A call whose answer never arrived: the server may or may not have done it."""


@dataclass
class Verdict:
    """What became of one document."""

    name: str
    unique_id: str | None
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"document": self.name, "uniqueId": self.unique_id, "reasons": self.reasons}


@dataclass
class ImportReport:
    """The summary of a run (``--json`` prints :meth:`as_json`)."""

    source: str
    accepted: list[Verdict] = field(default_factory=list)
    rejected: list[Verdict] = field(default_factory=list)
    skipped: list[Verdict] = field(default_factory=list)
    pending: list[Verdict] = field(default_factory=list)
    """Documents this run did not get to (it was aborted or interrupted)."""
    batches: int = 0
    seconds: float = 0.0
    aborted: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        return {
            "accepted": len(self.accepted),
            "rejected": len(self.rejected),
            "skipped": len(self.skipped),
            "pending": len(self.pending),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "counts": self.counts,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "aborted": self.aborted,
            "accepted": [v.as_dict() for v in self.accepted],
            "rejected": [v.as_dict() for v in self.rejected],
            "skipped": [v.as_dict() for v in self.skipped],
            "pending": [v.as_dict() for v in self.pending],
        }

    def lines(self) -> list[str]:
        """The human summary: the totals, then each rejected document with its reasons."""
        rate = len(self.accepted) / self.seconds if self.seconds else 0.0
        lines = [
            f"import of {self.source}: {sum(self.counts.values())} documents in {self.batches} "
            f"batches, {self.seconds:.1f} s ({rate:.1f} accepted/s)",
            f"  accepted  {len(self.accepted)}",
            f"  rejected  {len(self.rejected)}",
            f"  skipped   {len(self.skipped)}",
        ]
        if self.pending:
            lines.append(f"  pending   {len(self.pending)} (not attempted: run again to resume)")
        if self.aborted:
            lines.append(f"stopped: {self.aborted}")
        for verdict in self.rejected:
            uid = f" ({verdict.unique_id})" if verdict.unique_id else ""
            lines.append(f"REJECTED {verdict.name}{uid}")
            lines += [f"    {reason}" for reason in verdict.reasons]
        return lines


class Progress:
    """A one-line progress bar on a terminal (nothing when the stream is not a TTY)."""

    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.total = total
        self.started = time.monotonic()
        self.shown = 0.0

    def update(self, report: ImportReport, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.shown < 0.1:
            return
        self.shown = now
        done = len(report.accepted) + len(report.rejected) + len(report.skipped)
        width = 30
        filled = width * done // self.total if self.total else width
        rate = len(report.accepted) / max(now - self.started, 1e-9)
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total}  "
            f"accepted {len(report.accepted)}  rejected {len(report.rejected)}  "
            f"skipped {len(report.skipped)}  {rate:.1f}/s "
        )
        self.stream.flush()

    def finish(self, report: ImportReport) -> None:
        if self.enabled:
            self.update(report, force=True)
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class Answer:
    """A batch's answer: success, or the errors (each possibly naming a document)."""

    ok: bool
    errors: list[RegistryErrorInfo] = field(default_factory=list)

    def reasons(self, errors: Iterable[RegistryErrorInfo] | None = None) -> list[str]:
        return [f"{e.code}: {e.context}" for e in (self.errors if errors is None else errors)]


@dataclass
class ImportOptions:
    batch_size: int = DEFAULT_BATCH_SIZE
    retries: int = 5
    backoff_s: float = 1.0
    """First pause after a transient failure; doubled at each retry."""


def _document_ids(batch: Sequence[Prepared]) -> list[str]:
    return [f"Document{n:04d}" for n in range(1, len(batch) + 1)]


def _named_documents(location: str) -> set[int]:
    """Indexes (from 1) of the documents an error location names (``DocumentNNNN``)."""
    return {int(n) for n in _DOC_ID.findall(location)}


class Importer:
    """One import run against one server, as one professional (see the module docstring)."""

    def __init__(
        self,
        client: XdsClient,
        identity: Identity,
        journal: Journal,
        spec: SubmissionSetSpec,
        options: ImportOptions,
        report: ImportReport,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.identity = identity
        self.journal = journal
        self.spec = spec
        self.options = options
        self.report = report
        self.sleep = sleep
        self.progress: Progress | None = None
        self.run_id = uuid.uuid4().hex[:8]
        self._batch_numbers = itertools.count(1)
        self.in_doubt: set[str] = set()
        """uniqueIds that may have landed in an earlier, unanswered call."""
        self._done: set[str] = set()
        """Names of the documents with a verdict."""
        self._unanswered: dict[str, list[str]] = {}
        """Calls of this run without an answer: batch id -> its uniqueIds."""

    # --- the run ----------------------------------------------------------------------------

    def run(
        self,
        prepared: Sequence[Prepared],
        skipped: Sequence[Skipped],
        state: JournalState,
        progress: Progress | None = None,
    ) -> ImportReport:
        """Import ``prepared`` (what :func:`~.sources.prepare` made of each document)."""
        started = time.monotonic()
        self.progress = progress
        report = self.report
        report.skipped += [Verdict(s.name, None, [s.reason]) for s in skipped]
        to_send = self._triage(prepared, state)
        by_patient: dict[str, list[Prepared]] = defaultdict(list)
        for doc in to_send:
            by_patient[doc.patient_id].append(doc)
        remaining = list(to_send)
        try:
            self._resolve_journal(by_patient, state)
            for patient, docs in by_patient.items():
                docs = [d for d in docs if not self._decided(d)]
                size = self.options.batch_size
                for start in range(0, len(docs), size):
                    self._deliver(patient, docs[start : start + size])
                    self._tick()
        except Aborted as exc:
            report.aborted = str(exc)
        except KeyboardInterrupt:
            report.aborted = "interrupted"
        finally:
            report.pending = [
                Verdict(d.name, d.unique_id) for d in remaining if not self._decided(d)
            ]
            report.seconds = time.monotonic() - started
            if progress is not None:
                progress.finish(report)
        return report

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress.update(self.report)

    def _decided(self, doc: Prepared) -> bool:
        return doc.name in self._done

    def _verdict(self, into: list[Verdict], doc: Prepared, reasons: list[str]) -> None:
        into.append(Verdict(doc.name, doc.unique_id, reasons))
        self._done.add(doc.name)

    def _accept(self, doc: Prepared, *reasons: str) -> None:
        self._verdict(self.report.accepted, doc, list(reasons))

    def _skip(self, doc: Prepared, *reasons: str) -> None:
        self._verdict(self.report.skipped, doc, list(reasons))

    def _reject(self, doc: Prepared, reasons: list[str]) -> None:
        self._verdict(self.report.rejected, doc, reasons)

    def _triage(self, prepared: Sequence[Prepared], state: JournalState) -> list[Prepared]:
        """Refused locally, already imported, or to send."""
        to_send = []
        seen: dict[str, str] = {}
        for doc in prepared:
            if doc.problems or doc.entry is None:
                self._reject(doc, doc.problems)
            elif doc.unique_id in seen:
                self._reject(doc, [f"its uniqueId is also that of {seen[doc.unique_id]}"])
            elif doc.unique_id in state.accepted:
                seen[doc.unique_id] = doc.name  # type: ignore[index]
                self._skip(doc, "already imported (journal)")
            else:
                seen[doc.unique_id] = doc.name  # type: ignore[index]
                to_send.append(doc)
        return to_send

    # --- batches whose answer never came ----------------------------------------------------

    def _resolve_journal(self, by_patient: dict[str, list[Prepared]], state: JournalState) -> None:
        """Ask the registry about the documents of unanswered batches of earlier runs; a
        batch is closed in the journal once each of its documents has a definite answer."""
        doubtful = {uid for batch in state.in_doubt for uid in batch.unique_ids}
        if not doubtful:
            return
        landed: set[str] = set()
        for patient, docs in by_patient.items():
            mine = [d for d in docs if d.unique_id in doubtful]
            try:
                landed |= self._landed(patient, mine) if mine else set()
            except _InDoubt as exc:
                raise Aborted(f"the server does not answer ({exc})") from exc
        for batch in state.in_doubt:
            if not self.in_doubt & batch.unique_ids.keys():
                accepted = [u for u in batch.unique_ids if u in landed]
                self.journal.result(batch.batch, "resolved", accepted)

    def _landed(self, patient: str, docs: Sequence[Prepared]) -> set[str]:
        """Which of ``docs`` the registry already has (each then accepted). When the registry
        cannot tell, they stay in doubt: a duplicate answer for them later means "had
        landed"."""
        found = self._lookup(patient, [d.unique_id or "" for d in docs])
        landed = set()
        for doc in docs:
            uid = doc.unique_id or ""
            if found is None:
                self.in_doubt.add(uid)
                continue
            self.in_doubt.discard(uid)
            if uid not in found:
                continue
            if found[uid] and doc.entry and found[uid] != doc.entry.hash:
                self._reject(doc, ["the registry has this uniqueId with other content"])
            else:
                landed.add(uid)
                self._accept(doc, "registered by an earlier, unanswered call")
        return landed

    def _lookup(self, patient: str, unique_ids: list[str]) -> dict[str, str] | None:
        """uniqueId -> SHA-1 of those the registry holds, or None when it cannot tell us (the
        query is refused or fails). Raises :class:`_InDoubt` when the server does not answer."""
        self.client.header_factory = self.identity.headers_for(patient)
        try:
            result = self.client.stored_query(
                v.GET_DOCUMENTS, {"$XDSDocumentEntryUniqueId": unique_ids}
            )
        except SoapFaultError:
            return None
        except (requests.RequestException, ClientError) as exc:
            raise _InDoubt(str(exc)) from exc
        if result.status != "Success":
            return None
        found = {}
        for obj in result.objects:
            unique_id = next(
                (
                    ei.get("value", "")
                    for ei in obj.iter(f"{{{RIM}}}ExternalIdentifier")
                    if ei.get("identificationScheme") == v.DE_UNIQUE_ID
                ),
                None,
            )
            if unique_id:
                found[unique_id] = (slot_values(obj).get("hash") or [""])[0].lower()
        return found

    # --- sending ----------------------------------------------------------------------------

    def _deliver(self, patient: str, batch: list[Prepared]) -> None:
        """Send ``batch`` and settle every document of it (see the module docstring)."""
        answer = self._send_with_retries(patient, batch)
        if answer.ok:
            for doc in batch:
                if not self._decided(doc):
                    self._accept(doc)
            return
        named: dict[int, list[RegistryErrorInfo]] = defaultdict(list)
        general: list[RegistryErrorInfo] = []
        for error in answer.errors:
            if error.severity == "Warning":
                continue
            indexes = {i for i in _named_documents(error.location) if 1 <= i <= len(batch)}
            for index in indexes:
                named[index].append(error)
            if not indexes:
                general.append(error)
        for index, errors in named.items():
            self._settle(batch[index - 1], answer, errors)
        rest = [d for i, d in enumerate(batch, start=1) if i not in named]
        if not rest:
            return
        if not general and not named:  # a Failure that names no error: nothing to learn
            for doc in rest:
                self._reject(doc, answer.reasons() or ["the server answered Failure"])
            return
        if not general:
            self._deliver(patient, rest)  # the others were fine: one more batch
        elif len(rest) == 1:
            self._reject(rest[0], answer.reasons(general))
        elif named:
            self._deliver(patient, rest)
        else:
            self._probe(patient, rest, general)

    def _probe(self, patient: str, rest: list[Prepared], general: list[RegistryErrorInfo]) -> None:
        """No error names a document: try one alone to learn whether the trouble is the
        patient's (then it applies to all) or one document's (then send singly)."""
        first, others = rest[0], rest[1:]
        self._deliver(patient, [first])
        codes = {e.code for e in general}
        verdict = next((r for r in reversed(self.report.rejected) if r.name == first.name), None)
        if verdict is not None and {r.split(":", 1)[0] for r in verdict.reasons} == codes:
            for doc in others:
                self._reject(doc, list(verdict.reasons))
            return
        for doc in others:
            self._deliver(patient, [doc])

    def _settle(self, doc: Prepared, answer: Answer, errors: list[RegistryErrorInfo]) -> None:
        """One document the server named: rejected, or already there (a duplicate)."""
        if all(e.code == DUPLICATE for e in errors):
            if doc.unique_id in self.in_doubt:
                self._accept(doc, "registered by an earlier, unanswered call")
            else:
                self._skip(doc, "already in the registry")
            return
        self._reject(doc, answer.reasons(errors))

    def _send_with_retries(self, patient: str, batch: list[Prepared]) -> Answer:
        """One batch until it has a definite answer; :class:`Aborted` when there is none."""
        pause = self.options.backoff_s
        last = ""
        for attempt in range(self.options.retries + 1):
            if attempt:
                self.sleep(pause)
                pause *= 2
            try:
                if any(d.unique_id in self.in_doubt for d in batch):
                    batch = self._drop_landed(patient, batch)
                    if not batch:
                        return Answer(True)
                answer = self._send(patient, batch)
            except _InDoubt as exc:
                last = f"no answer from the server ({exc})"
                self.in_doubt.update(d.unique_id or "" for d in batch)
                continue
            if not answer.ok and answer.errors and all(e.code in TRANSIENT for e in answer.errors):
                last = "; ".join(answer.reasons())
                continue
            return answer
        raise Aborted(f"gave up after {self.options.retries + 1} attempts: {last}")

    def _drop_landed(self, patient: str, batch: list[Prepared]) -> list[Prepared]:
        """Before sending again what may have landed: ask, keep only what did not, and close
        in the journal the unanswered calls the registry has now answered for."""
        doubtful = [d for d in batch if d.unique_id in self.in_doubt]
        landed = self._landed(patient, doubtful)
        for batch_id, unique_ids in list(self._unanswered.items()):
            if not self.in_doubt & set(unique_ids):
                self.journal.result(batch_id, "resolved", [u for u in unique_ids if u in landed])
                del self._unanswered[batch_id]
        return [d for d in batch if d.unique_id not in landed and not self._decided(d)]

    def _send(self, patient: str, batch: list[Prepared]) -> Answer:
        """One ITI-41 call, journaled before and after. A document that cannot be read any
        more (a zip member failing its CRC, say) is answered as an error naming it, so that
        the rest of the batch goes on without it."""
        batch_id = f"{self.run_id}-{next(self._batch_numbers)}"
        ids = _document_ids(batch)
        entries = [(did, doc.entry) for did, doc in zip(ids, batch, strict=True)]
        request = submit_objects_request(patient, entries, self.spec)  # type: ignore[arg-type]
        self.client.header_factory = self.identity.headers_for(patient)
        with contextlib.ExitStack() as files:
            documents: dict[str, bytes | Path] = {}
            for did, doc in zip(ids, batch, strict=True):
                try:
                    documents[did] = files.enter_context(doc.source.as_file())
                except (OSError, TooLarge, zipfile.BadZipFile) as exc:
                    why = f"the document cannot be read: {exc}"
                    return Answer(False, [RegistryErrorInfo("Unreadable", why, did, "Error")])
            unique_ids = [d.unique_id or "" for d in batch]
            self.journal.sending(
                batch_id,
                [(d.name, d.unique_id or "", d.entry.hash or "") for d in batch],  # type: ignore[union-attr]
            )
            self.report.batches += 1
            try:
                result = self.client.provide_and_register(request, documents)
            except SoapFaultError as exc:
                return self._fault(batch_id, exc, unique_ids)
            except (requests.RequestException, ClientError) as exc:
                self._unanswered[batch_id] = unique_ids
                raise _InDoubt(str(exc)) from exc
        ok = result.status == "Success"
        self.journal.result(batch_id, result.status, unique_ids if ok else [])
        return Answer(ok, list(result.errors))

    def _fault(self, batch_id: str, exc: SoapFaultError, unique_ids: list[str]) -> Answer:
        """A SOAP fault: our credentials refused (stop), the request refused (reject the
        batch), or the server failing (in doubt: it may have committed before failing)."""
        fault = exc.fault
        if fault.code != "Sender":
            self._unanswered[batch_id] = unique_ids
            raise _InDoubt(f"SOAP fault {fault.code}: {fault.reason}")
        self.journal.result(batch_id, "Fault")
        if (fault.subcode or "").startswith(f"{{{WSSE_NAMESPACE}}}"):
            raise Aborted(f"the server refuses our VIHF: {fault.reason}")
        code = (fault.subcode or "Sender").rsplit("}", 1)[-1]
        return Answer(False, [RegistryErrorInfo(code, fault.reason, "", "Error")])


def summary_json(report: ImportReport) -> str:
    return json.dumps(report.as_json(), ensure_ascii=False, indent=2)


def default_journal(source: Path) -> Path:
    """Where the journal lives unless told: in the folder, or beside the zip archive."""
    if source.is_dir():
        return source / ".dmp-xds-import.jsonl"
    return source.with_name(source.name + ".dmp-xds-import.jsonl")
