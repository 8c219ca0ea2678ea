"""The registry endpoint's transactions: ITI-42 Register, ITI-57 Update, ITI-62 Remove and
ITI-18 Registry Stored Query."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection

from lxml import etree
from sqlalchemy import Connection

from ..call import Call, Reply
from ..errors import ErrorCode, XdsError, XdsFailure
from ..metadata import vocabulary as v
from ..metadata.ebrim import (
    adhoc_query_response,
    object_ref,
    parse_document_entry,
    parse_submission,
    registry_response,
)
from ..metadata.model import Submission
from ..metadata.validation import validate_submission
from ..metadata.xsd import payload_errors
from ..namespaces import LCM, QUERY
from ..patients.gate import RecordGate, Rules, refusal, require
from ..policy import patient as patient_policy
from ..policy import purge as purge_policy
from ..policy.access import REVISE, Search
from ..policy.facts import confidentiality_of
from ..policy.updates import UnsupportedChange, metadata_operations, revises, status_operation
from ..repository.maintenance import Removal, remove_if_unreferenced
from ..repository.store import DocumentStore
from ..soap.envelope import splice_point
from .queries import Found, parameter_errors, stored_query_for
from .queries import requested_objects as query_requested
from .query_params import QueryRequest, read_query_request
from .register import as_urn, register
from .remove import read_remove_request, remove_objects
from .update import UpdatePlan, apply_update, plan_update
from .update import requested_objects as update_requested

log = logging.getLogger(__name__)


def expect(
    payload: etree._Element,
    namespace: str,
    local: str,
    code: ErrorCode = ErrorCode.REGISTRY_METADATA,
) -> None:
    """The payload is the request this action takes and is valid against our schemas.

    Schema problems stop the transaction before the metadata rules run: a misplaced or
    misspelt element would otherwise be silently ignored by the parser.
    """
    if payload.tag != f"{{{namespace}}}{local}":
        raise XdsFailure(
            XdsError(
                code,
                f"expected {local}, got {etree.QName(payload).localname}",
                etree.QName(payload).localname,
            )
        )
    problems = payload_errors(payload)
    if problems:
        raise XdsFailure([XdsError(code, f"schema: {p}", local) for p in problems])


_TAG = re.compile(r"<[^\s/>]+")


def leaf_class(found: Found) -> str:
    """The stored fragment with its current status, as text (spliced into the answer)."""
    tag = _TAG.match(found.ebrim)
    if tag is None:  # every fragment starts with its element's tag (register.fragment)
        raise ValueError("stored registry object is not an element")
    return f'{tag.group()} status="{found.status}"{found.ebrim[tag.end() :]}'


class RegistryService:
    def __init__(
        self,
        *,
        max_query_results: int,
        rules: Rules,
        store: DocumentStore,
        purge_authorised: Collection[str] = (),
    ) -> None:
        self.max_query_results = max_query_results
        self.rules = rules  # the DMP's rights and habilitations (patients/gate.py)
        self.store = store  # ITI-62 deletes the bytes its removal leaves unreferenced
        # ITI-62: who may purge (DMP_XDS_PURGE_AUTHORISED; empty: nobody, policy/purge.py).
        self.purge_authorised = frozenset(purge_authorised)

    def register(self, call: Call) -> Reply:
        """ITI-42: metadata only; hash, size and repositoryUniqueId come from the submitter."""
        try:
            expect(call.payload, LCM, "SubmitObjectsRequest")
            sub, errors = parse_submission(call.payload)
            # Only the VIHF's patient (policy/patient.py: XDSPatientIdDoesNotMatch otherwise).
            errors += patient_policy.submission_patient_errors(call.authorised_patient, sub)
            errors += validate_submission(sub, registry_side=True)
            with call.writing() as conn:
                gate = admit_feed(conn, call, self.rules, sub)
                register(conn, sub, errors, patient_key=gate.patient_key, hidden=gate.unknown)
                call.audit_success(conn, [o.id for o in sub.objects()])
            call.log["documents"] = len(sub.documents)
            return Reply(registry_response())
        except XdsFailure as failure:
            return Reply(registry_response(failure.errors))

    def update(self, call: Call) -> Reply:
        """ITI-57: new document versions and availability-status changes (registry/update.py)."""
        try:
            expect(call.payload, LCM, "SubmitObjectsRequest")
            sub, errors = parse_submission(call.payload)
            call.audit_objects = update_requested(sub)  # what a refusal's event names
            errors += patient_policy.submission_patient_errors(call.authorised_patient, sub)
            errors += validate_submission(sub, registry_side=True, update=True)
            with call.writing() as conn:
                gate = RecordGate.load(conn, call.principal, self.rules)  # type: ignore[arg-type]
                # The record's gates first, then the documents: one the caller cannot find is
                # answered as an unknown one (plan_update), the others as the rights say.
                require(gate.change_record(), "SubmitObjectsRequest", call)
                plan = plan_update(conn, sub, errors, gate.unknown)
                denied = change_errors(gate, plan)
                if denied:
                    call.log["refused"] = denied[0].message
                    raise XdsFailure(denied)
                apply_update(conn, plan)
                call.audit_success(conn, [o.id for o in sub.objects()])
            call.log["documents"] = len(sub.documents)
            return Reply(registry_response())
        except XdsFailure as failure:
            return Reply(registry_response(failure.errors))

    def remove(self, call: Call) -> Reply:
        """ITI-62: erase the listed objects of the VIHF's patient (registry/remove.py), which
        must be deleted documents (and what goes with them), then their bytes.

        Authorisation comes first, before the request is even read: by default nobody may
        purge, and a refused caller learns nothing about the ids it sent. The refusal is an
        XDS error, not a SOAP fault: the caller is authenticated (faults are for that), and a
        RegistryResponse Failure is what ITI-62 clients read, report and do not retry blindly.

        The bytes go after the commit, as ``dmp-xds purge`` does it: those no other entry
        references, under the content lock (a failure there leaves them to ``dmp-xds gc``,
        never metadata without its document).
        """
        try:
            decision = purge_policy.may_purge(call.principal, self.purge_authorised)
            if not decision:
                call.log["purge_refused"] = decision.reason
                raise XdsFailure(
                    XdsError(
                        ErrorCode.REGISTRY_ERROR,
                        f"not authorised to remove metadata: {decision.reason}",
                        "RemoveObjectsRequest",
                    )
                )
            expect(call.payload, LCM, "RemoveObjectsRequest", ErrorCode.REGISTRY_ERROR)
            ids, errors = read_remove_request(call.payload)
            if errors:
                raise XdsFailure(errors)
            with call.writing() as conn:
                removed = remove_objects(conn, call.authorised_patient, ids)
                call.audit_success(conn, removed.entry_uuids + removed.document_unique_ids)
            call.log["removed"] = removed.counts
            call.log["bytes_removed"] = self._remove_bytes(conn, removed.content_keys)
            return Reply(registry_response())
        except XdsFailure as failure:
            return Reply(registry_response(failure.errors))

    def _remove_bytes(self, conn: Connection, keys: Collection[str]) -> int:
        """After an ITI-62 commit: delete the bytes no entry references any more; how many
        were. The removal stands whatever happens here, so a failure is logged, not raised."""
        done = 0
        for key in sorted(keys):
            try:
                done += remove_if_unreferenced(conn, self.store, key) is Removal.REMOVED
            except Exception:
                log.exception("document bytes left for dmp-xds gc", extra={"sha256": key})
        return done

    def stored_query(self, call: Call) -> Reply:
        """ITI-18: run one stored query and answer ObjectRefs or LeafClass objects."""
        try:
            expect(call.payload, QUERY, "AdhocQueryRequest", ErrorCode.REGISTRY_ERROR)
            req, errors = read_query_request(call.payload)
            if errors or req is None:
                raise XdsFailure(errors)
            call.log["query"] = req.query_id
            call.audit_objects = query_requested(req)  # what a refusal's event names
            problems = parameter_errors(req)  # the request's own errors come first
            # Find*/GetAll must name the VIHF's patient (policy/patient.py).
            mismatch = patient_policy.query_errors(call.authorised_patient, req.params)
            if mismatch:
                raise XdsFailure(problems + mismatch)  # every error at once
            if req.return_type not in ("LeafClass", "ObjectRef"):
                raise XdsFailure(
                    XdsError(
                        ErrorCode.REGISTRY_ERROR,
                        f"returnType {req.return_type!r} is neither LeafClass nor ObjectRef",
                        "ResponseOption/@returnType",
                    )
                )
            if problems:
                raise XdsFailure(problems)
            with call.reading() as conn:
                gate = RecordGate.load(conn, call.principal, self.rules)  # type: ignore[arg-type]
                search = _search_allowed(gate, req, call)
                if gate.patient_key is not None and call.authorised_patient is not None:
                    req.known_keys[call.authorised_patient.canonical] = gate.patient_key
                found = stored_query_for(req).run(conn, req, self.max_query_results)
                if not any(p in req.params for p in patient_policy.PATIENT_PARAMETERS):
                    # Get* queries name objects: another patient's are left out, as if absent.
                    found = _visible(found, gate, call)
                # Documents the caller may not see are left out too, and so are associations
                # that would reveal them.
                found = _shown(conn, gate, found, search, call)
            call.log["results"] = len(found)
            call.audit_objects = [as_urn(f.entry_uuid) for f in found]
            if req.return_type == "ObjectRef":
                objects = [object_ref(as_urn(f.entry_uuid)) for f in found]
                return Reply(adhoc_query_response(objects, status=v.RESPONSE_SUCCESS))
            return Reply(
                adhoc_query_response([splice_point()], status=v.RESPONSE_SUCCESS),
                spliced=[leaf_class(f) for f in found],
            )
        except XdsFailure as failure:
            return Reply(adhoc_query_response((), failure.errors))


def admit_feed(conn: Connection, call: Call, rules: Rules, sub: Submission) -> RecordGate:
    """ITI-41/42: the VIHF's patient has an open record this caller may feed (TD2.1), with
    these documents (the patient's side adds patient-contributed ones only); return the gate,
    whose patient key and document rules the registry checks go on with."""
    principal = call.principal
    if principal is None:
        raise XdsFailure(XdsError(ErrorCode.DMP_ACCESS_DENIED, "no VIHF", "SubmitObjectsRequest"))
    gate = RecordGate.load(conn, principal, rules)
    require(gate.feed(), "SubmitObjectsRequest", call)
    refused = [
        refusal(decision, doc.label)
        for doc in sub.documents
        if not (decision := gate.contribute(doc))
    ]
    if refused:
        call.log["refused"] = refused[0].message
        raise XdsFailure(refused)
    return gate


def _search_allowed(gate: RecordGate, req: QueryRequest, call: Call) -> Search:
    """TD3.1: may the caller search this record, and for what (metadata or references)."""
    decision, search = gate.search()
    require(decision, "AdhocQuery", call)
    if search is Search.REFERENCES and req.return_type != "ObjectRef":
        call.log["refused"] = "references only"
        raise XdsFailure(
            XdsError(
                ErrorCode.DMP_ACCESS_DENIED,
                "this caller may only look up document references: ask for ObjectRef",
                "ResponseOption/@returnType",
            )
        )
    return search


def _shown(
    conn: Connection, gate: RecordGate, found: list[Found], search: Search, call: Call
) -> list[Found]:
    """``found`` without the documents the caller may not see and the associations to them."""
    docs = [(f.entry_uuid, f.facts) for f in found if f.kind == "DocumentEntry"]
    ends = {e for f in found if f.kind == "Association" for e in (f.source, f.target) if e}
    hidden = gate.hidden(conn, {u for u, _ in docs} | ends, search, known=docs)
    if not hidden:
        return found
    kept = [
        f
        for f in found
        if f.entry_uuid not in hidden and f.source not in hidden and f.target not in hidden
    ]
    call.log["hidden"] = call.log.get("hidden", 0) + len(found) - len(kept)
    return kept


def change_errors(gate: RecordGate, plan: UpdatePlan) -> list[XdsError]:
    """ITI-57 as the DMP uses it (TD3.3): each new version and status change is a masking,
    unmasking, visibility, archiving or deletion operation the caller must be allowed."""
    errors: list[XdsError] = []
    for new in plan.versions:
        try:
            operations = metadata_operations(
                gate.document(new.previous).confidentiality,
                confidentiality_of(c.key for c in new.doc.confidentiality_codes),
            )
        except UnsupportedChange as exc:
            errors.append(XdsError(ErrorCode.METADATA_UPDATE_OPERATION, str(exc), new.doc.label))
            continue
        previous = parse_document_entry(etree.fromstring(new.previous.ebrim))
        if REVISE not in operations and revises(previous, new.doc):
            operations.append(REVISE)  # a masker may mask, not rewrite the rest
        for operation in operations:
            decision = gate.change(new.previous, operation)
            if not decision:
                errors.append(refusal(decision, new.doc.label))
    for change in plan.changes:
        if change.target is None:  # a Folder: its status follows the feeding rights
            decision = gate.feed()
        else:
            try:
                operation = status_operation(change.original, change.new)
            except UnsupportedChange as exc:
                errors.append(
                    XdsError(ErrorCode.METADATA_UPDATE_OPERATION, str(exc), change.assoc.label)
                )
                continue
            decision = gate.change(change.target, operation)
        if not decision:
            errors.append(refusal(decision, change.assoc.label))
    if not plan.versions and not plan.changes:
        decision = gate.feed()
        if not decision:
            errors.append(refusal(decision, "SubmitObjectsRequest"))
    return errors


def _visible(found: list[Found], gate: RecordGate, call: Call) -> list[Found]:
    """The objects of ``found`` that belong to the VIHF's patient (the gate's record)."""
    kept = [f for f in found if f.patient_key == gate.patient_key]
    if len(kept) != len(found):
        call.log["hidden"] = len(found) - len(kept)
    return kept
