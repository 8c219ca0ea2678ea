"""Validation of a parsed submission: every rule of ITI TF-3 4.2 that needs no database.

Returns the complete list of problems, each with its standard code and a location naming the
object and attribute; the registry adds the checks that need stored state (patients known,
uniqueIds free, association targets present).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from ..errors import ErrorCode, XdsError
from . import vocabulary as v
from .datatypes import (
    is_dtm,
    is_language_code,
    is_mime_type,
    is_oid,
    is_pid_field,
    is_sha1_hex,
    is_unique_id,
    is_uuid_urn,
    parse_patient_id,
    xcn_problem,
    xon_problem,
    xtn_problem,
)
from .model import Author, Code, DocumentEntry, Folder, Submission, SubmissionSet


class _Checker:
    def __init__(self, code: ErrorCode) -> None:
        self.code = code
        self.errors: list[XdsError] = []

    def fail(self, message: str, location: str, code: ErrorCode | None = None) -> None:
        self.errors.append(XdsError(code or self.code, message, location))

    def require(self, value: object, what: str, where: str) -> bool:
        if value in (None, "", []):
            self.fail(f"{what} is missing", f"{where} / {what}")
            return False
        return True

    def check(
        self,
        value: str | None,
        what: str,
        where: str,
        ok: Callable[[str], bool],
        expected: str,
        *,
        required: bool = True,
    ) -> None:
        if value is None or value == "":
            if required:
                self.fail(f"{what} is missing", f"{where} / {what}")
            return
        if not ok(value):
            self.fail(f"{what} {value!r} is not {expected}", f"{where} / {what}")

    def patient(self, value: str | None, what: str, where: str, required: bool = True) -> None:
        if not value:
            if required:
                self.fail(f"{what} is missing", f"{where} / {what}")
            return
        try:
            parse_patient_id(value)
        except ValueError as exc:
            self.fail(str(exc), f"{where} / {what}")

    def coded(self, value: Code | None, what: str, where: str, required: bool = True) -> None:
        if value is None:
            if required:
                self.fail(f"{what} is missing", f"{where} / {what}")
            return
        if not value.code or not value.scheme:
            self.fail(f"{what} needs a code and a coding scheme", f"{where} / {what}")

    def shaped(
        self, values: list[str], what: str, where: str, problem: Callable[[str], str | None]
    ) -> None:
        for value in values:
            reason = problem(value)
            if reason:
                self.fail(f"{what} {value!r}: {reason}", f"{where} / {what}")

    def authors(self, authors: list[Author], where: str) -> None:
        for author in authors:
            self.shaped(
                [author.person] if author.person else [], "authorPerson", where, xcn_problem
            )
            self.shaped(author.institutions, "authorInstitution", where, xon_problem)
            self.shaped(author.telecoms, "authorTelecommunication", where, xtn_problem)


def _recipient_problem(value: str) -> str | None:
    """intendedRecipient is ``XON|XCN^...|XTN``: at least one part, each well formed."""
    parts = value.split("|")
    if not any(parts):
        return "empty recipient"
    checks = [xon_problem, xcn_problem, xtn_problem]
    for part, check in zip(parts, checks, strict=False):
        if part:
            reason = check(part)
            if reason:
                return reason
    return None


def _time(checker: _Checker, value: str | None, what: str, where: str, required: bool) -> None:
    checker.check(
        value, what, where, is_dtm, "an HL7 DTM time (YYYY[MM[DD[hh[mm[ss]]]]])", required=required
    )


def _document(c: _Checker, doc: DocumentEntry, *, registry_side: bool) -> None:
    where = doc.label
    if doc.object_type not in v.DOCUMENT_ENTRY_TYPES:
        c.fail(
            f"objectType {doc.object_type!r} is not a DocumentEntry type", f"{where} / objectType"
        )
    stable = doc.object_type != v.ON_DEMAND_DOCUMENT
    c.check(doc.mime_type, "mimeType", where, is_mime_type, "a MIME type")
    c.patient(doc.patient_id, "patientId", where)
    c.check(doc.unique_id, "uniqueId", where, is_unique_id, "an OID-based uniqueId")
    c.coded(doc.class_code, "classCode", where)
    c.coded(doc.type_code, "typeCode", where)
    c.coded(doc.format_code, "formatCode", where)
    c.coded(doc.facility_code, "healthcareFacilityTypeCode", where)
    c.coded(doc.practice_code, "practiceSettingCode", where)
    if not doc.confidentiality_codes:
        c.fail("confidentialityCode is missing", f"{where} / confidentialityCode")
    c.check(doc.language_code, "languageCode", where, is_language_code, "an RFC 5646 language tag")
    c.shaped(
        [doc.legal_authenticator] if doc.legal_authenticator else [],
        "legalAuthenticator",
        where,
        xcn_problem,
    )
    c.shaped(
        doc.source_patient_info,
        "sourcePatientInfo",
        where,
        lambda value: None if is_pid_field(value) else "expected 'PID-n|value'",
    )
    _time(c, doc.creation_time, "creationTime", where, required=stable)
    _time(c, doc.service_start_time, "serviceStartTime", where, required=False)
    _time(c, doc.service_stop_time, "serviceStopTime", where, required=False)
    if (
        doc.service_start_time
        and doc.service_stop_time
        and is_dtm(doc.service_start_time)
        and is_dtm(doc.service_stop_time)
        and doc.service_stop_time < doc.service_start_time[: len(doc.service_stop_time)]
    ):
        c.fail("serviceStopTime is before serviceStartTime", f"{where} / serviceStopTime")
    c.check(doc.hash, "hash", where, is_sha1_hex, "a hex SHA-1", required=registry_side and stable)
    c.check(
        doc.size,
        "size",
        where,
        str.isdigit,
        "a non-negative integer",
        required=registry_side and stable,
    )
    c.check(
        doc.repository_unique_id,
        "repositoryUniqueId",
        where,
        is_oid,
        "an OID",
        required=registry_side and stable,
    )
    c.patient(doc.source_patient_id, "sourcePatientId", where, required=False)
    c.authors(doc.authors, where)
    if doc.lid is not None and not is_uuid_urn(doc.lid):
        c.fail(f"lid {doc.lid!r} is not a UUID", f"{where} / lid")


def _submission_set(c: _Checker, ss: SubmissionSet) -> None:
    where = ss.label
    c.patient(ss.patient_id, "patientId", where)
    c.check(ss.unique_id, "uniqueId", where, is_unique_id, "an OID-based uniqueId")
    c.check(ss.source_id, "sourceId", where, is_oid, "an OID")
    _time(c, ss.submission_time, "submissionTime", where, required=True)
    c.coded(ss.content_type_code, "contentTypeCode", where, required=not ss.limited_metadata)
    c.shaped(ss.intended_recipients, "intendedRecipient", where, _recipient_problem)
    c.authors(ss.authors, where)


def _folder(c: _Checker, fol: Folder) -> None:
    where = fol.label
    c.patient(fol.patient_id, "patientId", where)
    c.check(fol.unique_id, "uniqueId", where, is_unique_id, "an OID-based uniqueId")
    if not fol.codes:
        c.fail("codeList is missing", f"{where} / codeList")


def validate_submission(
    sub: Submission, *, registry_side: bool, update: bool = False
) -> list[XdsError]:
    """All database-free problems of ``sub``.

    ``registry_side`` is True for ITI-42 and ITI-57 (the submitter must give hash, size and
    repositoryUniqueId) and False for ITI-41 (the repository computes them); ``update`` admits
    the ITI-57 UpdateAvailabilityStatus association.
    """
    code = ErrorCode.REGISTRY_METADATA if registry_side else ErrorCode.REPOSITORY_METADATA
    c = _Checker(code)
    if len(sub.submission_sets) != 1:
        c.fail(
            f"a submission must hold exactly one SubmissionSet, found {len(sub.submission_sets)}",
            "SubmissionSet",
        )
    for ss in sub.submission_sets:
        _submission_set(c, ss)
    for doc in sub.documents:
        _document(c, doc, registry_side=registry_side)
    for fol in sub.folders:
        _folder(c, fol)
    _patient_consistency(c, sub)
    _unique_ids(c, sub)
    _associations(
        c, sub, v.ASSOCIATION_TYPES | ({v.UPDATE_AVAILABILITY_STATUS} if update else set())
    )
    return c.errors


def _patient_consistency(c: _Checker, sub: Submission) -> None:
    ss = sub.submission_set
    if ss is None or not ss.patient_id:
        return
    try:
        expected = parse_patient_id(ss.patient_id)
    except ValueError:
        return
    for obj in (*sub.documents, *sub.folders):
        if not obj.patient_id:
            continue
        try:
            pid = parse_patient_id(obj.patient_id)
        except ValueError:
            continue
        if pid != expected:
            c.fail(
                f"patientId {pid} differs from the SubmissionSet's {expected}",
                f"{obj.label} / patientId",
                ErrorCode.PATIENT_ID_DOES_NOT_MATCH,
            )


def _unique_ids(c: _Checker, sub: Submission) -> None:
    counts = Counter(
        o.unique_id for o in (*sub.submission_sets, *sub.documents, *sub.folders) if o.unique_id
    )
    for unique_id, n in counts.items():
        if n > 1:
            c.fail(
                f"uniqueId {unique_id} is used by {n} objects of this submission",
                f"uniqueId {unique_id}",
                ErrorCode.DUPLICATE_UNIQUE_ID_IN_MESSAGE,
            )


def _associations(c: _Checker, sub: Submission, types: frozenset[str]) -> None:
    ss = sub.submission_set
    local = {o.id for o in sub.objects()}
    # Sets, not scans: an integration engine's submission holds thousands of documents.
    set_ids = {s.id for s in sub.submission_sets}
    document_ids = {d.id for d in sub.documents}
    members: set[str] = set()
    for assoc in sub.associations:
        where = assoc.label
        if assoc.type not in types:
            c.fail(
                f"associationType {assoc.type!r} is not an XDS association type",
                f"{where} / associationType",
            )
            continue
        for attr, ref in (("sourceObject", assoc.source), ("targetObject", assoc.target)):
            if not ref:
                c.fail(f"{attr} is missing", f"{where} / {attr}")
            elif ref not in local and not is_uuid_urn(ref):
                c.fail(
                    f"{attr} {ref!r} names no object of the submission and is not a UUID",
                    f"{where} / {attr}",
                    ErrorCode.UNRESOLVED_REFERENCE,
                )
        if assoc.source and assoc.source == assoc.target:
            c.fail("an association cannot link an object to itself", f"{where} / targetObject")
            continue
        if assoc.type == v.HAS_MEMBER and assoc.target in set_ids:
            c.fail("a SubmissionSet cannot be a member of anything", f"{where} / targetObject")
            continue
        if assoc.type == v.HAS_MEMBER and ss is not None and assoc.source == ss.id:
            members.add(assoc.target)
            target_is_doc = assoc.target in document_ids
            if assoc.submission_set_status is None and (target_is_doc or assoc.target not in local):
                c.fail(
                    "HasMember from the SubmissionSet needs a SubmissionSetStatus slot",
                    f"{where} / SubmissionSetStatus",
                )
            elif assoc.submission_set_status not in (None, "Original", "Reference"):
                c.fail(
                    f"SubmissionSetStatus {assoc.submission_set_status!r} is not "
                    "Original or Reference",
                    f"{where} / SubmissionSetStatus",
                )
    if ss is None:
        return
    for obj in (*sub.documents, *sub.folders):
        if obj.id not in members:
            c.fail("not a member of the SubmissionSet (no HasMember association)", f"{obj.label}")
