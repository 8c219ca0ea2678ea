"""``dmp-xds submit | query | retrieve | import``: the client commands, thin layers over
:class:`~dmp_xds.client.xds.XdsClient` for operators and scripts.

Kept apart from ``cli.py`` (as ``security/commands.py`` is) so that the command table there
stays one line per command. Every command signs a fresh VIHF per call (:mod:`.identity`); the
metadata of a submitted document are derived exactly as ``import`` derives them
(:mod:`.sources`), sidecar file included. Exit status: 0 done, 1 the server (or the local
checks) refused something, 2 a usage or configuration error, 3 the run stopped before the end
(``import``: run it again to resume), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lxml import etree

from ..config import Settings
from ..metadata import vocabulary as v
from ..metadata.datatypes import parse_patient_id
from ..metadata.ebrim import parse_submission
from ..namespaces import LCM, RIM
from . import identity as ident
from .journal import Journal
from .journal import load as load_journal
from .sources import (
    DEFAULT_MAX_BYTES,
    FileSource,
    Prepared,
    Skipped,
    Source,
    folder_sources,
    prepare,
    zip_sources,
)
from .submission import SidecarError, SubmissionSetSpec, parse_code, submit_objects_request
from .transport import ClientError
from .xds import QueryValue, SoapFaultError

DEFAULT_CONTENT_TYPE = "04^^1.2.250.1.213.2.2"
DEFAULT_SOURCE_ID = "1.2.250.1.999.1.2.1"
QUERIES = {
    "FindDocuments": v.FIND_DOCUMENTS,
    "FindDocumentsByReferenceId": v.FIND_DOCUMENTS_BY_REFERENCE_ID,
    "FindSubmissionSets": v.FIND_SUBMISSION_SETS,
    "FindFolders": v.FIND_FOLDERS,
    "GetAll": v.GET_ALL,
    "GetDocuments": v.GET_DOCUMENTS,
    "GetFolders": v.GET_FOLDERS,
    "GetAssociations": v.GET_ASSOCIATIONS,
    "GetDocumentsAndAssociations": v.GET_DOCUMENTS_AND_ASSOCIATIONS,
    "GetSubmissionSets": v.GET_SUBMISSION_SETS,
    "GetSubmissionSetAndContents": v.GET_SUBMISSION_SET_AND_CONTENTS,
    "GetFolderAndContents": v.GET_FOLDER_AND_CONTENTS,
    "GetFoldersForDocument": v.GET_FOLDERS_FOR_DOCUMENT,
    "GetRelatedDocuments": v.GET_RELATED_DOCUMENTS,
}
STATUSES = {
    "Approved": v.APPROVED,
    "Deprecated": v.DEPRECATED,
    "Archived": v.ARCHIVED,
    "Deleted": v.DELETED,
}
# The patient and status parameters each Find query takes (the CLI fills them in).
_PATIENT_PARAMS = {
    "FindDocuments": ("$XDSDocumentEntryPatientId", ("$XDSDocumentEntryStatus",)),
    "FindDocumentsByReferenceId": ("$XDSDocumentEntryPatientId", ("$XDSDocumentEntryStatus",)),
    "FindSubmissionSets": ("$XDSSubmissionSetPatientId", ("$XDSSubmissionSetStatus",)),
    "FindFolders": ("$XDSFolderPatientId", ("$XDSFolderStatus",)),
    "GetAll": (
        "$patientId",
        ("$XDSDocumentEntryStatus", "$XDSSubmissionSetStatus", "$XDSFolderStatus"),
    ),
}
EXIT_REFUSED, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = 1, 2, 3, 130


def add_parsers(sub: argparse._SubParsersAction) -> None:
    submit = sub.add_parser("submit", help="send one document (CDA XML or PDF) with ITI-41")
    submit.add_argument("file", type=Path)
    submit.add_argument("--patient", help="patient CX (default: the CDA's recordTarget)")
    submit.add_argument("--meta", type=Path, help="JSON DocumentEntry overrides (see README)")
    _add_submission_options(submit)
    submit.add_argument("--json", action="store_true", help="print the outcome as JSON")
    ident.add_arguments(submit)
    submit.set_defaults(func=cmd_submit)

    query = sub.add_parser("query", help="run an ITI-18 stored query for one patient")
    query.add_argument("--patient", required=True, help="patient CX: matricule^^^&OID&ISO")
    query.add_argument("--query", default="FindDocuments", choices=sorted(QUERIES))
    query.add_argument(
        "--status",
        action="append",
        choices=sorted(STATUSES),
        help="statuses for the Find queries (default Approved; repeatable)",
    )
    query.add_argument("--unique-id", action="append", default=[], help="GetDocuments: uniqueId")
    query.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other parameter, e.g. '$XDSDocumentEntryTypeCode=11490-0^^2.16.840.1.113883"
        ".6.1' (repeat a NAME for OR)",
    )
    query.add_argument("--object-refs", action="store_true", help="ask for ObjectRefs only")
    query.add_argument("--json", action="store_true", help="print the objects as JSON")
    ident.add_arguments(query)
    query.set_defaults(func=cmd_query)

    retrieve = sub.add_parser("retrieve", help="fetch one document with ITI-43")
    retrieve.add_argument("unique_id", help="the document's uniqueId")
    retrieve.add_argument("--patient", required=True, help="patient CX (the VIHF names them)")
    retrieve.add_argument("-o", "--output", required=True, help="file to write ('-': stdout)")
    retrieve.add_argument("--repository", help="repositoryUniqueId (default: this server's)")
    ident.add_arguments(retrieve)
    retrieve.set_defaults(func=cmd_retrieve)

    imp = sub.add_parser(
        "import",
        help="send a folder or zip of documents in ITI-41 batches (resumable: see README)",
    )
    imp.add_argument("source", type=Path, help="folder or .zip of CDA documents (and PDFs)")
    imp.add_argument("--batch-size", type=int, default=100, help="documents per submission set")
    imp.add_argument(
        "--journal", type=Path, help="journal file (default: <folder>/.dmp-xds-import.jsonl)"
    )
    imp.add_argument("--retries", type=int, default=5, help="attempts after a transient failure")
    imp.add_argument(
        "--retry-pause", type=float, default=1.0, help="first pause (s), doubled at each retry"
    )
    imp.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_submission_options(imp)
    ident.add_arguments(imp)
    imp.set_defaults(func=cmd_import)


def _add_submission_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--content-type",
        default=DEFAULT_CONTENT_TYPE,
        help=f"SubmissionSet contentTypeCode, code^^scheme (default {DEFAULT_CONTENT_TYPE})",
    )
    parser.add_argument(
        "--source-id", default=DEFAULT_SOURCE_ID, help="SubmissionSet sourceId (an OID)"
    )
    parser.add_argument(
        "--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="largest document sent"
    )


def _setup(
    args: argparse.Namespace, settings: Settings
) -> tuple[ident.Identity, SubmissionSetSpec | None]:
    """The VIHF identity and (for the submitting commands) the SubmissionSet description;
    ValueError with a message for the operator."""
    identity = ident.identity_from(args, settings)
    if not hasattr(args, "content_type"):
        return identity, None
    try:
        content_type = parse_code(args.content_type, "--content-type")
    except SidecarError as exc:
        raise ValueError(str(exc)) from None
    return identity, SubmissionSetSpec(args.source_id, content_type, identity.author())


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _patient(value: str) -> str:
    return parse_patient_id(value).canonical


def _errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    return [{"code": e.code, "message": e.context, "location": e.location} for e in errors]


# --- submit -----------------------------------------------------------------------------------


def cmd_submit(settings: Settings, args: argparse.Namespace) -> int:
    try:
        identity, spec = _setup(args, settings)
        overrides = json.loads(args.meta.read_text(encoding="utf-8")) if args.meta else {}
        if not isinstance(overrides, dict):
            raise ValueError(f"{args.meta} must hold a JSON object")
        if args.patient:
            overrides["patientId"] = _patient(args.patient)
        file = args.file.resolve()
        if not file.is_file():
            raise ValueError(f"{args.file} is not a file")
    except (ValueError, OSError) as exc:
        return _usage_error(str(exc))
    assert spec is not None
    prepared = prepare(
        FileSource(file.parent, file, file.stat().st_size), args.max_bytes, overrides
    )
    if prepared.problems or prepared.entry is None:
        _print_outcome(args, prepared, "Refused", [], prepared.problems)
        return EXIT_REFUSED
    client = ident.client_for(args, settings, identity, prepared.patient_id)
    request = submit_objects_request(prepared.patient_id, [("Document0001", prepared.entry)], spec)
    try:
        result = client.provide_and_register(request, {"Document0001": file})
    except SoapFaultError as exc:
        _print_outcome(args, prepared, "Fault", [], [str(exc)])
        return EXIT_REFUSED
    except (OSError, ClientError) as exc:
        print(f"error: no answer from the server: {exc}", file=sys.stderr)
        return EXIT_STOPPED
    _print_outcome(args, prepared, result.status, result.errors, [])
    return 0 if result.status == "Success" else EXIT_REFUSED


def _print_outcome(
    args: argparse.Namespace,
    prepared: Prepared,
    status: str,
    errors: Sequence[Any],
    problems: list[str],
) -> None:
    if args.json:
        outcome = {
            "document": prepared.name,
            "uniqueId": prepared.unique_id,
            "status": status,
            "errors": _errors(errors),
            "problems": problems,
        }
        print(json.dumps(outcome, ensure_ascii=False, indent=2))
        return
    verb = "accepted" if status == "Success" else "REJECTED"
    print(f"{verb} {prepared.name} (uniqueId {prepared.unique_id})")
    for error in errors:
        print(f"    {error.code}: {error.context} [{error.location}]")
    for problem in problems:
        print(f"    {problem}")


# --- query ------------------------------------------------------------------------------------


def _query_params(args: argparse.Namespace, patient: str) -> dict[str, QueryValue]:
    params: dict[str, Any] = {}
    if args.query in _PATIENT_PARAMS:
        patient_param, status_params = _PATIENT_PARAMS[args.query]
        params[patient_param] = patient
        statuses = [STATUSES[s] for s in (args.status or ["Approved"])]
        for name in status_params:
            params[name] = statuses
    if args.unique_id:
        params["$XDSDocumentEntryUniqueId"] = list(args.unique_id)
    for item in args.param:
        name, sep, raw = item.partition("=")
        if not sep or not name.startswith("$"):
            raise ValueError(f"--param {item!r} is not NAME=VALUE with NAME like $XDS...")
        value: str | int = int(raw) if raw.isdigit() and "Time" in name else raw
        params.setdefault(name, []).append(value)
    return params


def _document_rows(objects: Sequence[etree._Element]) -> list[dict[str, Any]]:
    """What a query answered, one dict per object (DocumentEntries in detail)."""
    wrapper = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    listed = etree.SubElement(wrapper, f"{{{RIM}}}RegistryObjectList")
    for obj in objects:
        listed.append(etree.fromstring(etree.tostring(obj)))
    submission, _ = parse_submission(wrapper)  # the model's own ebRIM reader
    rows: list[dict[str, Any]] = []
    for doc in submission.documents:
        rows.append(
            {
                "kind": "DocumentEntry",
                "entryUUID": doc.id,
                "uniqueId": doc.unique_id,
                "status": (doc.status or "").rsplit(":", 1)[-1],
                "version": doc.version,
                "creationTime": doc.creation_time,
                "typeCode": doc.type_code.key if doc.type_code else None,
                "classCode": doc.class_code.key if doc.class_code else None,
                "mimeType": doc.mime_type,
                "title": doc.title,
                "size": doc.size,
                "hash": doc.hash,
                "repositoryUniqueId": doc.repository_unique_id,
            }
        )
    for kind, items in (
        ("SubmissionSet", submission.submission_sets),
        ("Folder", submission.folders),
    ):
        rows += [{"kind": kind, "entryUUID": o.id, "uniqueId": o.unique_id} for o in items]
    for assoc in submission.associations:
        rows.append(
            {
                "kind": "Association",
                "entryUUID": assoc.id,
                "type": assoc.type.rsplit(":", 1)[-1],
                "source": assoc.source,
                "target": assoc.target,
            }
        )
    rows += [
        {"kind": "ObjectRef", "entryUUID": o.get("id")}
        for o in objects
        if etree.QName(o).localname == "ObjectRef"
    ]
    return rows


def cmd_query(settings: Settings, args: argparse.Namespace) -> int:
    try:
        patient = _patient(args.patient)
        identity, _ = _setup(args, settings)
        params = _query_params(args, patient)
    except ValueError as exc:
        return _usage_error(str(exc))
    client = ident.client_for(args, settings, identity, patient)
    return_type = "ObjectRef" if args.object_refs else "LeafClass"
    try:
        result = client.stored_query(QUERIES[args.query], params, return_type)
    except SoapFaultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (OSError, ClientError) as exc:
        print(f"error: no answer from the server: {exc}", file=sys.stderr)
        return EXIT_STOPPED
    rows = _document_rows(result.objects)
    if args.json:
        answer = {"status": result.status, "errors": _errors(result.errors), "objects": rows}
        print(json.dumps(answer, ensure_ascii=False, indent=2))
    else:
        for error in result.errors:
            print(f"{error.severity}: {error.code}: {error.context} [{error.location}]")
        for row in rows:
            print("  ".join(f"{k}={v}" for k, v in row.items() if v is not None))
        print(f"{len(rows)} objects ({result.status})")
    return 0 if result.status == "Success" else EXIT_REFUSED


# --- retrieve ---------------------------------------------------------------------------------


def cmd_retrieve(settings: Settings, args: argparse.Namespace) -> int:
    try:
        patient = _patient(args.patient)
        identity, _ = _setup(args, settings)
    except ValueError as exc:
        return _usage_error(str(exc))
    client = ident.client_for(args, settings, identity, patient)
    repository = args.repository or settings.repository_unique_id
    try:
        result = client.retrieve([(repository, args.unique_id)])
    except SoapFaultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (OSError, ClientError) as exc:
        print(f"error: no answer from the server: {exc}", file=sys.stderr)
        return EXIT_STOPPED
    for error in result.errors:
        print(f"{error.severity}: {error.code}: {error.context}", file=sys.stderr)
    if not result.documents:
        return EXIT_REFUSED
    document = result.documents[0]
    if args.output == "-":
        sys.stdout.buffer.write(document.content)
        sys.stdout.buffer.flush()
    else:
        Path(args.output).write_bytes(document.content)
    print(
        f"{document.document_uid}: {document.mime_type}, {len(document.content)} bytes",
        file=sys.stderr,
    )
    return 0


# --- import -----------------------------------------------------------------------------------


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from .importer import (
        Aborted,
        Importer,
        ImportOptions,
        ImportReport,
        Progress,
        default_journal,
        summary_json,
    )

    if args.batch_size < 1:
        return _usage_error("--batch-size must be at least 1")
    source: Path = args.source
    if not source.is_dir() and not (source.is_file() and source.suffix.lower() == ".zip"):
        return _usage_error(f"{source} is neither a folder nor a .zip file")
    try:
        identity, spec = _setup(args, settings)
        journal_path = args.journal or default_journal(source)
        journal = Journal(journal_path)  # locked: then read what earlier runs wrote
        state = load_journal(journal_path)
    except (ValueError, OSError) as exc:
        return _usage_error(str(exc))
    assert spec is not None
    report = ImportReport(str(source))
    signal.signal(signal.SIGTERM, _interrupt)  # stopped by a service manager: summary too
    try:
        with _sources(source, args.max_bytes) as (sources, skipped):
            progress = Progress(len(sources) + len(skipped))
            prepared = []
            for src in sources:
                prepared.append(prepare(src, args.max_bytes))
            client = ident.client_for(args, settings, identity, "")
            importer = Importer(
                client,
                identity,
                journal,
                spec,
                ImportOptions(
                    batch_size=args.batch_size, retries=args.retries, backoff_s=args.retry_pause
                ),
                report,
            )
            importer.run(prepared, skipped, state, progress)
    except (Aborted, zipfile.BadZipFile) as exc:
        report.aborted = str(exc)
    finally:
        journal.close()
    print(summary_json(report) if args.json else "\n".join(report.lines()))
    if report.aborted == "interrupted":
        return EXIT_INTERRUPTED
    if report.aborted:
        return EXIT_STOPPED
    return EXIT_REFUSED if report.rejected else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _sources(
    source: Path, max_bytes: int
) -> contextlib.AbstractContextManager[tuple[list[Source], list[Skipped]]]:
    """A folder's documents, or a zip archive's (open while the import runs)."""
    if source.is_dir():
        return contextlib.nullcontext(folder_sources(source))
    return zip_sources(source, max_bytes)
