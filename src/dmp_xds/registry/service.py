"""The registry endpoint's transactions: ITI-42 Register and ITI-18 Registry Stored Query."""

from __future__ import annotations

from lxml import etree
from sqlalchemy import Engine

from ..call import Call, Reply
from ..errors import ErrorCode, XdsError, XdsFailure
from ..metadata import vocabulary as v
from ..metadata.ebrim import adhoc_query_response, object_ref, parse_submission, registry_response
from ..metadata.validation import validate_submission
from ..metadata.xsd import payload_errors
from ..namespaces import LCM, QUERY
from .queries import Found, run_stored_query
from .query_params import read_query_request
from .register import as_urn, register


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
    def __init__(self, engine: Engine, *, max_query_results: int) -> None:
        self.engine = engine
        self.max_query_results = max_query_results

    def register(self, call: Call) -> Reply:
        """ITI-42: metadata only; hash, size and repositoryUniqueId come from the submitter."""
        try:
            expect(call.payload, LCM, "SubmitObjectsRequest")
            sub, errors = parse_submission(call.payload)
            errors += validate_submission(sub, registry_side=True)
            with self.engine.begin() as conn:
                register(conn, sub, prior_errors=errors)
            call.log["documents"] = len(sub.documents)
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
            call.log["results"] = len(found)
            if req.return_type == "ObjectRef":
                objects = [object_ref(as_urn(f.entry_uuid)) for f in found]
            else:
                objects = [leaf_class(f) for f in found]
            return Reply(adhoc_query_response(objects, status=v.RESPONSE_SUCCESS))
        except XdsFailure as failure:
            return Reply(adhoc_query_response((), failure.errors))
