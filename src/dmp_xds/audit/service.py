"""The trace service (``/dmp/Traces``, wsdl/Traces.wsdl): a patient's trail for software.

The national DMP shows traces on its web portal only, so this service is ours
(``urn:dmp-xds:traces:1``). It reads the trail of the patient the VIHF names, with the DMP's
rule (policy.access.read_traces): the médecin traitant the whole trail, any other
professional their own actions. The answer has the shape of the DMP's own services: an
``output`` with the items, then ``status`` (``DMPOk`` or the refusal) and ``context``, never a
SOAP fault for a refusal. The call itself is audited like any other (transaction DMP-TRACES).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from ..call import Call, Reply
from ..metadata import vocabulary as v
from ..metadata.datatypes import parse_patient_id
from ..metadata.xsd import payload_errors
from ..patients import vocabulary as dv
from ..patients.gate import RecordGate, Rules
from ..policy.access import TraceScope, read_traces
from .traces import DEFAULT_PAGE, Trace, TracePage, trail_page, utc_text

TRACES_NS = "urn:dmp-xds:traces:1"
LIST_TRACES = f"{TRACES_NS}:listTraces"
LIST_TRACES_RESPONSE = f"{LIST_TRACES}Response"
PATH = "/dmp/Traces"
WSDL = "Traces.wsdl"
BY_PAYLOAD = {f"{{{TRACES_NS}}}listTraces": LIST_TRACES}

_T = f"{{{TRACES_NS}}}"
_MAX_CONTEXT_PROBLEMS = 3


class TraceRefusal(Exception):
    """A refusal answered in ``output/status``."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code


class TraceService:
    """Handler of ``/dmp/Traces`` (bound by ``app.py``)."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules

    def handlers(self) -> dict[str, Callable[[Call], Reply]]:
        return {LIST_TRACES: self.list_traces}

    def list_traces(self, call: Call) -> Reply:
        root = etree.Element(_T + "listTracesResponse", nsmap={"tr": TRACES_NS})
        output = etree.SubElement(root, _T + "output")
        try:
            request = _read_request(call.payload)
            principal = call.principal
            if principal is None:  # only a hand-built Call; the application authenticates
                raise TraceRefusal(dv.DMP_ACCESS_DENIED, "no authenticated caller")
            patient = principal.patient.canonical
            if request.patient_id is not None and request.patient_id != patient:
                raise TraceRefusal(
                    dv.PATIENT_MISMATCH, "the patient of the message is not the patient of the VIHF"
                )
            with call.reading() as conn:
                gate = RecordGate.load(conn, principal, self.rules)
                decision, scope = read_traces(gate.actor, gate.record)
                if not decision:
                    raise TraceRefusal(dv.DMP_ACCESS_DENIED, decision.reason)
                page = trail_page(
                    conn,
                    patient,
                    actor_id=None if scope is TraceScope.RECORD else principal.name_id,
                    since=request.since,
                    until=request.until,
                    offset=request.offset,
                    limit=request.limit,
                )
        except TraceRefusal as refusal:
            _leaf(output, "status", refusal.code)
            _leaf(output, "context", str(refusal))
            return Reply(
                root,
                action=LIST_TRACES_RESPONSE,
                status=v.RESPONSE_FAILURE,
                error_codes=[refusal.code],
            )
        call.audit_objects = [f"trail:{scope.value}"]
        call.log["trace_scope"] = scope.value
        _page(output, scope, page)
        _leaf(output, "status", dv.DMP_OK)
        return Reply(root, action=LIST_TRACES_RESPONSE, status=v.RESPONSE_SUCCESS)


@dataclass
class _Request:
    patient_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    offset: int = 0
    limit: int = DEFAULT_PAGE


def _read_request(payload: etree._Element) -> _Request:
    """The listTraces parameters, after the schema (traces.xsd) accepted the payload."""
    if payload.tag != _T + "listTraces":
        raise TraceRefusal(dv.DMP_INVALID_REQUEST, "the body must be a tr:listTraces element")
    problems = payload_errors(payload)
    if problems:
        shown = "; ".join(problems[:_MAX_CONTEXT_PROBLEMS])
        raise TraceRefusal(
            dv.DMP_INVALID_REQUEST, f"the request does not match traces.xsd: {shown}"
        )
    request = _Request()
    for child in payload:
        if not isinstance(child.tag, str):
            continue
        name, text = etree.QName(child).localname, (child.text or "").strip()
        if name == "patientId":
            try:
                request.patient_id = parse_patient_id(text).canonical
            except ValueError:
                # parse_patient_id quotes the value: keep identifiers out of answers and logs.
                raise TraceRefusal(
                    dv.DMP_INVALID_REQUEST, "patientId is not a CX 'matricule^^^&OID&ISO'"
                ) from None
        elif name in ("from", "to"):
            moment = _instant(text, name)
            if name == "from":
                request.since = moment
            else:
                request.until = moment
        elif name == "offset":
            request.offset = int(text)
        elif name == "maxResults":
            request.limit = int(text)
    if request.since and request.until and request.since >= request.until:
        raise TraceRefusal(dv.DMP_INVALID_REQUEST, "from must be before to")
    return request


def _instant(text: str, name: str) -> dt.datetime:
    """An xs:dateTime; one without a time zone is UTC."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TraceRefusal(dv.DMP_INVALID_REQUEST, f"{name} is not a date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _leaf(parent: etree._Element, name: str, text: str | None) -> etree._Element | None:
    if text is None:
        return None
    element = etree.SubElement(parent, _T + name)
    element.text = text
    return element


def _code(parent: etree._Element, name: str, value: str | None) -> None:
    """``code^^codeSystem`` (as the trail keeps it) -> ``<name code codeSystem/>``."""
    if not value:
        return
    code, _, system = value.partition("^^")
    element = etree.SubElement(parent, _T + name, code=code)
    if system:
        element.set("codeSystem", system)


def _page(output: etree._Element, scope: TraceScope, page: TracePage) -> None:
    _leaf(output, "scope", scope.value.upper())
    _leaf(output, "total", str(page.total))
    _leaf(output, "offset", str(page.offset))
    _leaf(output, "more", "true" if page.more else "false")
    for trace in page.traces:
        output.append(_trace(trace))


def _trace(trace: Trace) -> etree._Element:
    item = etree.Element(_T + "trace")
    _leaf(item, "eventId", str(trace.event_id))
    _leaf(item, "date", utc_text(trace.occurred_at))
    _leaf(item, "transaction", trace.transaction)
    _leaf(item, "action", trace.action)
    _leaf(item, "outcome", trace.outcome)
    for code in trace.error_codes:
        _leaf(item, "errorCode", code)
    if trace.actor_id is not None:
        actor = etree.SubElement(item, _T + "actor")
        _leaf(actor, "id", trace.actor_id)
        _leaf(actor, "name", trace.actor_name)
        _code(actor, "profession", trace.profession)
        _code(actor, "specialty", trace.specialty)
        _leaf(actor, "structureId", trace.structure_id)
        _leaf(actor, "authenticationMode", trace.authentication_mode)
        _leaf(actor, "software", trace.software)
    _leaf(item, "accessMode", trace.access_mode)
    _leaf(item, "emergency", "true" if trace.emergency else "false")
    _leaf(item, "motive", trace.access_motive)
    for identifier in trace.objects:
        _leaf(item, "object", identifier)
    return item
