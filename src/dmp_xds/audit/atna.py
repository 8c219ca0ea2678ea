"""One audit event as an IHE ATNA audit message: the DICOM PS3.15 A.5 ``AuditMessage``.

Built with lxml from what the trail holds (audit/trail.py ``AuditEvent``) plus a few
identifiers read from the request (:func:`request_facts`: the submission set's uniqueId, the
stored query and its id, the repository of each retrieved document): never document content.

Codes, per IHE ITI TF-2 for the XDS transactions (the DICOM ``DCM`` event ids, the ITI
transaction as EventTypeCode) and chosen in the same spirit for the DMP's own services:

===================================  ==================  ======  ==========================
transaction                          EventID             action  objects
===================================  ==================  ======  ==========================
ITI-41, ITI-42                       110107 Import       C       patient, submission set
ITI-57                               110107 Import       U       patient, submission set
ITI-18, DMP-TD0.4, DMP-TD0.5 (ITI-47) 110112 Query        E       patient, query (ITI-18)
ITI-43                               110106 Export       R       patient, documents
ITI-62                               110110 Patient Rec. D       patient, removed objects
DMP-TD0.2 ... TD1.6 (record, rights) 110110 Patient Rec. C/R/U   patient
DMP-TRACES, TRAIL-EXPORT             110101 Audit Log    R       patient, the audit log
refused by security (bad VIHF)       110114 User Auth.   E       patient if known
anything else (malformed request)    110113 Sec. Alert   E       -
===================================  ==================  ======  ==========================

Outcome: success 0, failure and partial 4 (XDS or DMP errors, listed in
EventOutcomeDescription), refused and fault 8. Participants: the calling software (Source,
or Destination when data leaves us: ITI-43) with the client's network address; the human
requestor (the VIHF's professional: national id, name, profession and specialty as
RoleIDCodes, the structure as AlternativeUserID); this server. An emergency access (break-glass,
centre 15) adds the EventTypeCode ``110127 Emergency Override Started`` and a PurposeOfUse
(the VIHF's access mode, TRE_R248), and the motive, when given, as a detail of the patient.

The patient is named in full (CX): an ATNA repository is an audit store, reached over mutual
TLS; the project's logs, in contrast, only ever carry a hash.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree

from ..metadata import vocabulary as v
from ..namespaces import QUERY, RIM, XDSB
from ..security.principal import ACCESS_MODE_SYSTEM
from .trail import TRANSACTIONS, AuditEvent

DCM = "DCM"
IHE = "IHE Transactions"
RFC3881 = "RFC-3881"
XDS_METADATA = "IHE XDS Metadata"
OURS = "dmp-xds"  # codeSystemName of the codes we made up (the DMP's own transactions)

SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    system: str
    text: str


IMPORT = Code("110107", DCM, "Import")
EXPORT = Code("110106", DCM, "Export")
QUERY_EVENT = Code("110112", DCM, "Query")
PATIENT_RECORD = Code("110110", DCM, "Patient Record")
AUDIT_LOG_USED = Code("110101", DCM, "Audit Log Used")
USER_AUTHENTICATION = Code("110114", DCM, "User Authentication")
SECURITY_ALERT = Code("110113", DCM, "Security Alert")
LOGIN = Code("110122", DCM, "Login")
EMERGENCY_OVERRIDE = Code("110127", DCM, "Emergency Override Started")
SOURCE = Code("110153", DCM, "Source Role ID")
DESTINATION = Code("110152", DCM, "Destination Role ID")
PATIENT_NUMBER = Code("2", RFC3881, "Patient Number")
REPORT_NUMBER = Code("9", RFC3881, "Report Number")
URI = Code("12", RFC3881, "URI")
SUBMISSION_SET = Code(SUBMISSION_SET_NODE, XDS_METADATA, "submission set classificationNode")
STORED_QUERY = Code("ITI-18", IHE, "Registry Stored Query")

_ACCESS_MODES = {
    "bris_de_glace": "Accès en bris de glace",
    "centre_15": "Accès par un centre de régulation médicale",
}


@dataclass(frozen=True, slots=True)
class Kind:
    """How a transaction is reported."""

    event: Code
    action: str  # EventActionCode: C R U D E
    type_code: Code | None
    outgoing: bool = False  # data leaves us (we are the Source, the client the Destination)


def _dmp(code: str, text: str) -> Code:
    return Code(code, OURS, text)


KINDS: dict[str, Kind] = {
    "ITI-41": Kind(IMPORT, "C", Code("ITI-41", IHE, "Provide and Register Document Set-b")),
    "ITI-42": Kind(IMPORT, "C", Code("ITI-42", IHE, "Register Document Set-b")),
    "ITI-57": Kind(IMPORT, "U", Code("ITI-57", IHE, "Update Document Set")),
    "ITI-18": Kind(QUERY_EVENT, "E", STORED_QUERY),
    "ITI-43": Kind(EXPORT, "R", Code("ITI-43", IHE, "Retrieve Document Set"), outgoing=True),
    "ITI-62": Kind(PATIENT_RECORD, "D", Code("ITI-62", IHE, "Delete Document Set")),
    "DMP-TD0.2/TD1.3a": Kind(
        PATIENT_RECORD, "R", _dmp("DMP-TD0.2/TD1.3a", "Existence test / record consultation")
    ),
    "DMP-TD1.1": Kind(PATIENT_RECORD, "C", _dmp("DMP-TD1.1", "Record creation")),
    "DMP-TD1.2/TD1.3b/TD1.4": Kind(
        PATIENT_RECORD, "U", _dmp("DMP-TD1.2/TD1.3b/TD1.4", "Record update, closing, reopening")
    ),
    "DMP-TD0.3": Kind(PATIENT_RECORD, "U", _dmp("DMP-TD0.3", "Authorisation change")),
    "DMP-TD1.6": Kind(PATIENT_RECORD, "R", _dmp("DMP-TD1.6", "Authorisations list")),
    "DMP-TD0.4": Kind(QUERY_EVENT, "E", _dmp("DMP-TD0.4", "Professional's patient list")),
    "DMP-TD0.5": Kind(QUERY_EVENT, "E", Code("ITI-47", IHE, "Patient Demographics Query")),
    "DMP-TRACES": Kind(AUDIT_LOG_USED, "R", _dmp("DMP-TRACES", "Trace query")),
    "TRAIL-EXPORT": Kind(AUDIT_LOG_USED, "R", _dmp("TRAIL-EXPORT", "Operator's trail export")),
}
_UNKNOWN = Kind(SECURITY_ALERT, "E", None)
_OUTCOMES = {"success": "0", "partial": "4", "failure": "4", "refused": "8", "fault": "8"}


@dataclass(frozen=True, slots=True)
class Source:
    """This server, as its messages name it."""

    audit_source_id: str  # AuditSourceID (DMP_XDS_ATNA_SOURCE_ID, default the host name)
    host: str
    enterprise_site_id: str | None = None
    repository_unique_id: str | None = None  # for ITI-43 documents the request did not place
    process_id: str = field(default_factory=lambda: str(os.getpid()))


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """Identifiers read from the request for the message (never content)."""

    submission_set: str | None = None
    query_id: str | None = None
    query: bytes | None = None  # the AdhocQueryRequest as received (parameters, no content)
    repositories: tuple[tuple[str, str, str | None], ...] = ()  # (document, repository, hcid)


def request_facts(event: AuditEvent, payload: etree._Element | None) -> RequestFacts | None:
    """What :func:`audit_message` needs from the request: cheap (a tag-filtered walk, or the
    serialisation of a small query), done on the request's thread because the payload tree
    belongs to it."""
    if payload is None:
        return None
    transaction = TRANSACTIONS.get(event.action or "")
    if transaction in ("ITI-41", "ITI-42", "ITI-57"):
        for identifier in payload.iter(f"{{{RIM}}}ExternalIdentifier"):
            if identifier.get("identificationScheme") == v.SS_UNIQUE_ID:
                return RequestFacts(submission_set=identifier.get("value"))
        return None
    if transaction == "ITI-18":
        query = payload.find(f"{{{RIM}}}AdhocQuery")
        if payload.tag != f"{{{QUERY}}}AdhocQueryRequest" or query is None:
            return None
        return RequestFacts(query_id=query.get("id"), query=etree.tostring(payload))
    if transaction == "ITI-43":
        found = []
        for request in payload.iter(f"{{{XDSB}}}DocumentRequest"):
            document = request.findtext(f"{{{XDSB}}}DocumentUniqueId")
            repository = request.findtext(f"{{{XDSB}}}RepositoryUniqueId")
            if document and repository:
                found.append(
                    (
                        document.strip(),
                        repository.strip(),
                        request.findtext(f"{{{XDSB}}}HomeCommunityId"),
                    )
                )
        return RequestFacts(repositories=tuple(found))
    return None


def kind_of(event: AuditEvent) -> Kind:
    transaction = TRANSACTIONS.get(event.action or "", "unknown")
    kind = KINDS.get(transaction, _UNKNOWN)
    if event.outcome == "refused":
        return Kind(USER_AUTHENTICATION, "E", LOGIN)
    return kind


def audit_message(
    event: AuditEvent, source: Source, facts: RequestFacts | None = None
) -> etree._Element:
    """The AuditMessage of ``event`` (see the module docstring for the codes)."""
    facts = facts or RequestFacts()
    kind = kind_of(event)
    transaction = TRANSACTIONS.get(event.action or "")
    p = event.principal
    root = etree.Element("AuditMessage")

    # --- EventIdentification ---
    when = event.occurred_at or dt.datetime.now(dt.UTC)
    identification = etree.SubElement(
        root,
        "EventIdentification",
        EventActionCode=kind.action,
        EventDateTime=_instant(when),
        EventOutcomeIndicator=_OUTCOMES.get(event.outcome, "8"),
    )
    _coded(identification, "EventID", kind.event)
    if kind.type_code is not None:
        _coded(identification, "EventTypeCode", kind.type_code)
    if event.outcome == "refused" and transaction in KINDS:
        type_code = KINDS[transaction].type_code
        if type_code is not None:
            _coded(identification, "EventTypeCode", type_code)
    emergency = p is not None and p.emergency
    if emergency:
        _coded(identification, "EventTypeCode", EMERGENCY_OVERRIDE)
    description = _outcome_description(event)
    if description:
        etree.SubElement(identification, "EventOutcomeDescription").text = description
    if p is not None and emergency:
        mode = p.access_mode.value
        _coded(
            identification,
            "PurposeOfUse",
            Code(mode, ACCESS_MODE_SYSTEM, _ACCESS_MODES.get(mode, mode)),
        )

    # --- ActiveParticipants: the calling software, the professional, this server ---
    client = etree.SubElement(
        root,
        "ActiveParticipant",
        UserID=_client_id(event),
        UserIsRequestor="false" if p is not None else "true",
    )
    if p is not None:
        client.set("UserName", f"{p.software.name} {p.software.version}")
    if event.remote_addr:
        client.set("NetworkAccessPointID", event.remote_addr)
        client.set("NetworkAccessPointTypeCode", "2")
    _coded(client, "RoleIDCode", DESTINATION if kind.outgoing else SOURCE)
    if p is not None:
        human = etree.Element("ActiveParticipant", UserID=p.name_id)
        human.set("AlternativeUserID", p.structure_id)
        if p.subject_name:
            human.set("UserName", p.subject_name)
        human.set("UserIsRequestor", "true")
        if event.remote_addr:
            human.set("NetworkAccessPointID", event.remote_addr)
            human.set("NetworkAccessPointTypeCode", "2")
        for role in p.roles:
            _coded(human, "RoleIDCode", Code(role.code, role.system, role.display or role.code))
        root.append(human)
    server = etree.SubElement(
        root,
        "ActiveParticipant",
        UserID=source.audit_source_id,
        AlternativeUserID=source.process_id,
        UserIsRequestor="false",
        NetworkAccessPointID=source.host,
        NetworkAccessPointTypeCode="1",
    )
    _coded(server, "RoleIDCode", SOURCE if kind.outgoing else DESTINATION)

    # --- AuditSourceIdentification ---
    audit_source = etree.SubElement(
        root, "AuditSourceIdentification", AuditSourceID=source.audit_source_id
    )
    if source.enterprise_site_id:
        audit_source.set("AuditEnterpriseSiteID", source.enterprise_site_id)
    etree.SubElement(audit_source, "AuditSourceTypeCode", {"csd-code": "4"})

    # --- ParticipantObjectIdentification: the patient, then what the call was about ---
    patient = event.patient_id or (p.patient.canonical if p is not None else None)
    if patient:
        details = []
        if emergency and p is not None and p.access_motive:
            details.append(("AccessMotive", p.access_motive.encode()))
        _object(root, patient, "1", "1", PATIENT_NUMBER, details=details)
    if event.outcome in ("success", "partial"):
        _objects_of(root, transaction, event, facts, source)
    return root


def _objects_of(
    root: etree._Element,
    transaction: str | None,
    event: AuditEvent,
    facts: RequestFacts,
    source: Source,
) -> None:
    if transaction in ("ITI-41", "ITI-42", "ITI-57") and facts.submission_set:
        _object(root, facts.submission_set, "2", "20", SUBMISSION_SET)
    elif transaction == "ITI-18":
        if facts.query_id and facts.query is not None:
            _object(
                root,
                facts.query_id,
                "2",
                "24",
                STORED_QUERY,
                query=facts.query,
                details=[("QueryEncoding", b"UTF-8")],
            )
    elif transaction == "ITI-43":
        placed = {d: (r, h) for d, r, h in facts.repositories}
        for document in event.objects:
            repository, home = placed.get(document, (source.repository_unique_id, None))
            details = []
            if repository:
                details.append(("Repository Unique Id", repository.encode()))
            if home:
                details.append(("ihe:homeCommunityID", home.encode()))
            _object(root, document, "2", "3", REPORT_NUMBER, details=details)
    elif transaction == "ITI-62":
        for removed in event.objects:
            _object(root, removed, "2", "3", REPORT_NUMBER)
    elif transaction in ("DMP-TRACES", "TRAIL-EXPORT"):
        _object(root, "urn:dmp-xds:audit_event", "2", "13", URI)


def _object(
    root: etree._Element,
    identifier: str,
    type_code: str,
    role: str,
    id_type: Code,
    *,
    query: bytes | None = None,
    details: Iterable[tuple[str, bytes]] = (),
) -> None:
    element = etree.SubElement(
        root,
        "ParticipantObjectIdentification",
        ParticipantObjectID=identifier,
        ParticipantObjectTypeCode=type_code,
        ParticipantObjectTypeCodeRole=role,
    )
    _coded(element, "ParticipantObjectIDTypeCode", id_type)
    if query is not None:
        etree.SubElement(element, "ParticipantObjectQuery").text = _b64(query)
    for name, value in details:
        etree.SubElement(element, "ParticipantObjectDetail", type=name, value=_b64(value))


def _coded(parent: etree._Element, tag: str, code: Code) -> None:
    etree.SubElement(
        parent,
        tag,
        {"csd-code": code.code, "codeSystemName": code.system, "originalText": code.text},
    )


def _client_id(event: AuditEvent) -> str:
    """The calling software: its installation id (LPS_ID), else its name; unknown callers
    (refused before the VIHF was read) by their address."""
    p = event.principal
    if p is not None:
        return p.software.installation_id or p.software.name
    return event.remote_addr or "unknown"


def _outcome_description(event: AuditEvent) -> str | None:
    if event.outcome == "success":
        return None
    parts = list(event.error_codes)
    if event.detail:
        parts.append(event.detail)
    return "; ".join(parts)[:1000] or event.outcome


def _instant(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
