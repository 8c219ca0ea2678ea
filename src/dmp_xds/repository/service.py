"""The repository endpoint's transactions: ITI-41 Provide and Register, ITI-43 Retrieve.

ITI-41 order of work (DESIGN.md, "Atomicity"): parse and validate everything, run the
registry's checks, make the document bytes durable in the content-addressed store, then write
all metadata in the same database transaction as the checks. A failure at any point leaves the
registry unchanged; bytes already stored are unreferenced and collected later by ``dmp-xds gc``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, wait

from lxml import etree
from sqlalchemy import Connection, Row, bindparam, select

from ..call import Call, Reply
from ..cda.consistency import check_documents as check_cda
from ..errors import ErrorCode, XdsError, XdsFailure
from ..metadata import vocabulary as v
from ..metadata.datatypes import is_uuid_urn
from ..metadata.ebrim import parse_submission, registry_response, set_slot
from ..metadata.model import DocumentEntry
from ..metadata.validation import validate_submission
from ..namespaces import LCM, XDSB
from ..patients.gate import RecordGate, Rules, require
from ..policy import patient as patient_policy
from ..registry import tables as t
from ..registry.database import Precompiled
from ..registry.queries import DOCUMENT_FACT_COLUMNS
from ..registry.register import check, write
from ..registry.service import admit_feed, expect
from ..soap.mtom import OutPart, SpooledPart, xop_include
from .content_lock import hold_for_write
from .store import CorruptDocument, DocumentStore, MissingDocument, VerifiedReader

log = logging.getLogger(__name__)
_X = f"{{{XDSB}}}"


def _attach_documents(
    call: Call, request: etree._Element, docs: list[DocumentEntry], symbols: dict[str, str]
) -> tuple[dict[str, SpooledPart], list[XdsError]]:
    """Pair each xdsb:Document with its DocumentEntry; report both kinds of orphan."""
    errors: list[XdsError] = []
    by_id = {d.id: d for d in docs}
    contents: dict[str, SpooledPart] = {}
    sent: set[str] = set()
    for element in request.iterchildren(_X + "Document"):
        raw_id = element.get("id", "")
        entry_id = symbols.get(raw_id, raw_id.lower() if is_uuid_urn(raw_id) else raw_id)
        part = call.request.document_content(element)
        if entry_id not in by_id:
            errors.append(
                XdsError(
                    ErrorCode.MISSING_DOCUMENT_METADATA,
                    f"document {raw_id!r} has no DocumentEntry in the metadata",
                    f"Document {raw_id}",
                )
            )
        elif entry_id in sent:
            errors.append(
                XdsError(
                    ErrorCode.REPOSITORY_METADATA,
                    f"document {raw_id!r} is sent twice",
                    by_id[entry_id].label,
                )
            )
        elif part is None:
            errors.append(
                XdsError(
                    ErrorCode.MISSING_DOCUMENT,
                    f"document {raw_id!r} has no content (no attachment or inline bytes)",
                    by_id[entry_id].label,
                )
            )
        else:
            contents[entry_id] = part
        sent.add(entry_id)
    referenced = call.request.referenced_content_ids()
    for content_id in call.request.attachments:
        if content_id not in referenced:
            errors.append(
                XdsError(
                    ErrorCode.MISSING_DOCUMENT_METADATA,
                    f"MIME part <{content_id}> is referenced by no Document",
                    f"MIME part {content_id}",
                )
            )
    for doc in docs:
        if doc.id not in sent:
            errors.append(
                XdsError(
                    ErrorCode.MISSING_DOCUMENT, "DocumentEntry has no attached document", doc.label
                )
            )
    return contents, errors


def _check_content(doc: DocumentEntry, part: SpooledPart, repository_uid: str) -> list[XdsError]:
    """Compare what the submitter said with the bytes, then record the computed values."""
    errors = []
    where = doc.label
    if doc.hash and doc.hash.lower() != part.sha1:
        message = f"hash slot {doc.hash} differs from the document's SHA-1 {part.sha1}"
        errors.append(XdsError(ErrorCode.NON_IDENTICAL_HASH, message, f"{where} / hash"))
        errors.append(XdsError(ErrorCode.REPOSITORY_METADATA, message, f"{where} / hash"))
    if doc.size and doc.size.isdigit() and int(doc.size) != part.size:
        message = f"size slot {doc.size} differs from the document's size {part.size}"
        errors.append(XdsError(ErrorCode.NON_IDENTICAL_SIZE, message, f"{where} / size"))
        errors.append(XdsError(ErrorCode.REPOSITORY_METADATA, message, f"{where} / size"))
    doc.hash, doc.size, doc.repository_unique_id = part.sha1, str(part.size), repository_uid
    set_slot(doc.element, "hash", [part.sha1])
    set_slot(doc.element, "size", [str(part.size)])
    set_slot(doc.element, "repositoryUniqueId", [repository_uid])
    return errors


class RepositoryService:
    def __init__(
        self,
        store: DocumentStore,
        *,
        repository_unique_id: str,
        rules: Rules,
        store_concurrency: int = 1,
    ) -> None:
        self.store = store
        self.repository_unique_id = repository_unique_id
        self.rules = rules  # the DMP's rights and habilitations (patients/gate.py)
        self.store_concurrency = store_concurrency
        self._writers: ThreadPoolExecutor | None = None  # made on the first batch, per worker

    def _store_all(self, contents: Mapping[str, SpooledPart]) -> dict[str, str]:
        """Store a submission's documents; their content keys by DocumentEntry id.

        Each durable write mostly waits (fsyncs of the file and its directory, or an S3 PUT),
        so an EAI batch of a thousand documents writes several at once. Every write has ended
        before this returns or raises (the first failure), so none still reads a spooled part
        when the request cleans its spool up; what was stored before a failure is an orphan,
        which ``dmp-xds gc`` collects.
        """
        if len(contents) < 2 or self.store_concurrency < 2:
            return {e: self.store.put_file(p.path, p.sha256).sha256 for e, p in contents.items()}
        if self._writers is None:
            self._writers = ThreadPoolExecutor(self.store_concurrency, "store-write")
        writes = {
            entry: self._writers.submit(self.store.put_file, part.path, part.sha256)
            for entry, part in contents.items()
        }
        wait(writes.values())
        return {entry: write.result().sha256 for entry, write in writes.items()}

    def provide_and_register(self, call: Call) -> Reply:
        try:
            expect(
                call.payload,
                XDSB,
                "ProvideAndRegisterDocumentSetRequest",
                ErrorCode.REPOSITORY_METADATA,
            )
            inner = call.payload.find(f"{{{LCM}}}SubmitObjectsRequest")
            if inner is None:
                raise XdsFailure(
                    XdsError(
                        ErrorCode.REPOSITORY_METADATA,
                        "ProvideAndRegisterDocumentSetRequest has no SubmitObjectsRequest",
                        "SubmitObjectsRequest",
                    )
                )
            sub, errors = parse_submission(inner)
            contents, attach_errors = _attach_documents(
                call, call.payload, sub.documents, sub.symbols
            )
            errors += attach_errors
            for doc in sub.documents:
                if doc.id in contents:
                    errors += _check_content(doc, contents[doc.id], self.repository_unique_id)
            errors += check_cda(sub.documents, contents)
            # Only the VIHF's patient (policy/patient.py: XDSPatientIdDoesNotMatch otherwise).
            errors += patient_policy.submission_patient_errors(call.authorised_patient, sub)
            errors += validate_submission(sub, registry_side=False)
            call.log["documents"] = len(sub.documents)
            with call.writing() as conn:
                gate = admit_feed(conn, call, self.rules, sub)
                checked = check(
                    conn, sub, errors, patient_key=gate.patient_key, hidden=gate.unknown
                )
                # Keeps `dmp-xds gc` off these bytes until the entries referencing them commit.
                hold_for_write(conn, [part.sha256 for part in contents.values()])
                write(conn, checked, self._store_all(contents))
                call.audit_success(conn, [o.id for o in sub.objects()])
            call.log["bytes"] = sum(part.size for part in contents.values())  # for /metrics
            return Reply(registry_response())
        except XdsFailure as failure:
            return Reply(registry_response(failure.errors))

    def retrieve(self, call: Call) -> Reply:
        """ITI-43: every requested document, verified against its key before any byte goes out."""
        response = etree.Element(_X + "RetrieveDocumentSetResponse", nsmap={"xdsb": XDSB})
        errors: list[XdsError] = []
        parts: list[OutPart] = []
        documents: list[etree._Element] = []
        try:
            expect(call.payload, XDSB, "RetrieveDocumentSetRequest", ErrorCode.REPOSITORY_ERROR)
        except XdsFailure as failure:
            response.append(registry_response(failure.errors))
            return Reply(response, force_mtom=True)
        requests = list(call.payload.iterchildren(_X + "DocumentRequest"))
        # The trail names what was asked for until something is served (a refused or failed
        # retrieve still says what it wanted).
        call.audit_objects = [
            (req.findtext(_X + "DocumentUniqueId") or "").strip() for req in requests
        ]
        if not requests:
            errors.append(
                XdsError(ErrorCode.REPOSITORY_ERROR, "no DocumentRequest", "DocumentRequest")
            )
        with call.reading() as conn:
            gate = self._reader(conn, call, response)
            if gate is None:
                return Reply(response, force_mtom=True)
            for number, req in enumerate(requests, start=1):
                repo = (req.findtext(_X + "RepositoryUniqueId") or "").strip()
                unique_id = (req.findtext(_X + "DocumentUniqueId") or "").strip()
                where = f"DocumentRequest {number} ({unique_id})"
                if repo != self.repository_unique_id:
                    errors.append(
                        XdsError(
                            ErrorCode.UNKNOWN_REPOSITORY_ID,
                            f"repository {repo!r} is not this repository",
                            where,
                        )
                    )
                    continue
                # Only the VIHF patient's documents are looked for: another patient's, or one
                # hidden from this caller (masked, deleted...), is answered like a missing one.
                row = self._locate(conn, gate.patient_key, unique_id)
                if row is None or not gate.shows(row):
                    errors.append(
                        XdsError(
                            ErrorCode.DOCUMENT_UNIQUE_ID,
                            f"document {unique_id!r} is not available in this repository",
                            where,
                        )
                    )
                    continue
                try:
                    reader = self.store.open(row.content_sha256)
                except (CorruptDocument, MissingDocument) as exc:
                    log.error(
                        "document bytes unusable",
                        extra={"sha256": row.content_sha256, "problem": type(exc).__name__},
                    )
                    errors.append(
                        XdsError(
                            ErrorCode.REPOSITORY_ERROR,
                            f"document {unique_id!r} cannot be served: its stored bytes failed "
                            "the integrity check",
                            where,
                        )
                    )
                    continue
                content_id = f"doc{number}@dmp-xds"
                parts.append(
                    OutPart(content_id, row.mime_type, reader.size, _chunks_then_close(reader))
                )
                documents.append(
                    self._document_response(repo, unique_id, row.mime_type, content_id)
                )
        status = None
        if errors and parts:
            status = v.RESPONSE_PARTIAL
        response.append(registry_response(errors, status=status))
        response.extend(documents)
        call.log["documents"] = len(parts)
        if documents:
            call.audit_objects = [d.findtext(_X + "DocumentUniqueId") or "" for d in documents]
        return Reply(response, parts, force_mtom=True)

    def _reader(self, conn: Connection, call: Call, response: etree._Element) -> RecordGate | None:
        """TD3.2: the caller may read this record (else the refusal is in ``response``)."""
        gate = RecordGate.load(conn, call.principal, self.rules)  # type: ignore[arg-type]
        try:
            require(gate.consult(), "RetrieveDocumentSetRequest", call)
        except XdsFailure as failure:
            response.append(registry_response(failure.errors))
            return None
        return gate

    def _locate(self, conn: Connection, patient_key: int | None, unique_id: str) -> Row | None:
        """The latest metadata version of one of the patient's documents (its status and
        confidentiality decide who may read it). By the patient's key, a constant: the one
        partition of document_entry that holds the patient's rows is the only one read."""
        if patient_key is None:
            return None
        return _LOCATE.execute(
            conn,
            {"key": patient_key, "unique_id": unique_id, "repository": self.repository_unique_id},
        ).one_or_none()

    @staticmethod
    def _document_response(
        repo: str, unique_id: str, mime_type: str, content_id: str
    ) -> etree._Element:
        doc = etree.Element(_X + "DocumentResponse")
        etree.SubElement(doc, _X + "RepositoryUniqueId").text = repo
        etree.SubElement(doc, _X + "DocumentUniqueId").text = unique_id
        etree.SubElement(doc, _X + "mimeType").text = mime_type
        xop_include(etree.SubElement(doc, _X + "Document"), content_id)
        return doc


# Built once: every document of every ITI-43 is looked up with it.
_LOCATE = Precompiled(
    select(t.document_entry.c.content_sha256, t.document_entry.c.mime_type, *DOCUMENT_FACT_COLUMNS)
    .where(
        t.document_entry.c.patient_key == bindparam("key"),
        t.document_entry.c.unique_id == bindparam("unique_id"),
        t.document_entry.c.repository_unique_id == bindparam("repository"),
        t.document_entry.c.content_sha256.is_not(None),
    )
    .order_by(t.document_entry.c.version.desc())
    .limit(1)
)


def _chunks_then_close(reader: VerifiedReader) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        try:
            yield from reader.iter_chunks()
        finally:
            reader.close()

    return chunks
