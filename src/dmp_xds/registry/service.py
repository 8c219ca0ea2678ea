"""The registry endpoint's transactions: ITI-42 Register, ITI-57 Update, ITI-62 Remove and
ITI-18 Registry Stored Query."""

from __future__ import annotations

from collections.abc import Collection

from lxml import etree
from sqlalchemy import Connection, Engine, select

from ..call import Call, Reply
from ..errors import ErrorCode, XdsError, XdsFailure
from ..metadata import vocabulary as v
from ..metadata.ebrim import adhoc_query_response, object_ref, parse_submission, registry_response
from ..metadata.validation import validate_submission
from ..metadata.xsd import payload_errors
from ..namespaces import LCM, QUERY
from ..policy import patient as patient_policy
from ..policy import purge as purge_policy
from . import tables as t
from .queries import QUERIES, Found, run_stored_query
from .query_params import QueryRequest, check_params, read_query_request
from .register import as_urn, register
from .remove import read_remove_request, remove_objects
from .update import update_document_set


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


def leaf_class(found: Found) -> etree._Element:
    element = etree.fromstring(found.ebrim)
    element.set("status", found.status)
    return element


class RegistryService:
    def __init__(
        self,
        engine: Engine,
        *,
        max_query_results: int,
        purge_authorised: Collection[str] = (),
    ) -> None:
        self.engine = engine
        self.max_query_results = max_query_results
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
            with self.engine.begin() as conn:
                register(conn, sub, prior_errors=errors)
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
            errors += patient_policy.submission_patient_errors(call.authorised_patient, sub)
            errors += validate_submission(sub, registry_side=True, update=True)
            with self.engine.begin() as conn:
                update_document_set(conn, sub, errors)
                call.audit_success(conn, [o.id for o in sub.objects()])
            call.log["documents"] = len(sub.documents)
            return Reply(registry_response())
        except XdsFailure as failure:
            return Reply(registry_response(failure.errors))

    def remove(self, call: Call) -> Reply:
        """ITI-62: erase the listed objects of the VIHF's patient (registry/remove.py).

        Authorisation comes first, before the request is even read: by default nobody may
        purge, and a refused caller learns nothing about the ids it sent. The refusal is an
        XDS error, not a SOAP fault: the caller is authenticated (faults are for that), and a
        RegistryResponse Failure is what ITI-62 clients read, report and do not retry blindly.
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
            with self.engine.begin() as conn:
                removed = remove_objects(conn, call.authorised_patient, ids)
                call.audit_success(conn, removed.entry_uuids + removed.document_unique_ids)
            call.log["removed"] = removed.counts
            return Reply(registry_response())
        except XdsFailure as failure:
            return Reply(registry_response(failure.errors))

    def stored_query(self, call: Call) -> Reply:
        """ITI-18: run one stored query and answer ObjectRefs or LeafClass objects."""
        try:
            expect(call.payload, QUERY, "AdhocQueryRequest", ErrorCode.REGISTRY_ERROR)
            req, errors = read_query_request(call.payload)
            if errors or req is None:
                raise XdsFailure(errors)
            call.log["query"] = req.query_id
            # Find*/GetAll must name the VIHF's patient (policy/patient.py).
            mismatch = patient_policy.query_errors(call.authorised_patient, req.params)
            if mismatch:
                raise XdsFailure(_parameter_errors(req) + mismatch)  # every error at once
            if req.return_type not in ("LeafClass", "ObjectRef"):
                raise XdsFailure(
                    XdsError(
                        ErrorCode.REGISTRY_ERROR,
                        f"returnType {req.return_type!r} is neither LeafClass nor ObjectRef",
                        "ResponseOption/@returnType",
                    )
                )
            with self.engine.connect() as conn:
                found = run_stored_query(conn, req, self.max_query_results)
                if not any(p in req.params for p in patient_policy.PATIENT_PARAMETERS):
                    # Get* queries name objects: another patient's are left out, as if absent.
                    found = _visible(conn, found, call)
            call.log["results"] = len(found)
            call.audit_objects = [as_urn(f.entry_uuid) for f in found]
            if req.return_type == "ObjectRef":
                objects = [object_ref(as_urn(f.entry_uuid)) for f in found]
            else:
                objects = [leaf_class(f) for f in found]
            return Reply(adhoc_query_response(objects, status=v.RESPONSE_SUCCESS))
        except XdsFailure as failure:
            return Reply(adhoc_query_response((), failure.errors))


def _parameter_errors(req: QueryRequest) -> list[XdsError]:
    """What the stored query itself would also have refused in ``req``."""
    query = QUERIES.get(req.query_id)
    return check_params(req, query.params, query.one_of) if query else []


def _visible(conn: Connection, found: list[Found], call: Call) -> list[Found]:
    """The objects of ``found`` that belong to the VIHF's patient."""
    if not found:
        return found
    loc, patient = t.object_locator, t.patient
    owners = dict(
        conn.execute(
            select(loc.c.entry_uuid, patient.c.patient_id)
            .join(patient, patient.c.patient_key == loc.c.patient_key)
            .where(loc.c.entry_uuid.in_({f.entry_uuid for f in found}))
        ).all()
    )
    kept = [
        f
        for f in found
        if patient_policy.visible(call.authorised_patient, owners.get(f.entry_uuid))
    ]
    if len(kept) != len(found):
        call.log["hidden"] = len(found) - len(kept)
    return kept
