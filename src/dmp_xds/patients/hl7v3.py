"""HL7v3 wire format of the DMP's patient services: reading PRPA_IN2013xx requests into the
record model and writing the answers in the shapes the national DMP gives (its example
messages are the reference: same root elements, acknowledgement forms and codes).

Why hand-written lxml and no generated HL7v3 binding: we read a handful of paths and write a
handful of answers; the full NE2008/NE2009 schemas weigh megabytes and would buy nothing but
start-up time. Requests are read leniently (unknown and ``xsi:nil`` elements are ignored, as
the ANS kit sends many) but strictly where meaning is at stake: message id, patient ids,
reasonCode, consent.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from ..namespaces import HL7V3, XSI
from . import vocabulary as dv
from .records import Identity, Oppositions, Record, Traits

H = f"{{{HL7V3}}}"
_NSMAP = {None: HL7V3}
_XSI_TYPE = f"{{{XSI}}}type"
_XSI_NIL = f"{{{XSI}}}nil"


class Hl7Error(Exception):
    """A request we cannot read; answered with an AE acknowledgement carrying ``code``."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass(frozen=True)
class InstanceId:
    root: str
    extension: str | None = None


@dataclass
class Header:
    """The transmission wrapper of a request: what the answer must point back to."""

    message_id: InstanceId | None
    sender_root: str | None
    sender_name: str | None
    reason: str | None
    query_id: InstanceId | None = None


# --- reading -----------------------------------------------------------------------------------
def _children(element: etree._Element | None, name: str) -> list[etree._Element]:
    if element is None:
        return []
    return [c for c in element if c.tag == H + name and c.get(_XSI_NIL) != "true"]


def _child(element: etree._Element | None, *path: str) -> etree._Element | None:
    for name in path:
        found = _children(element, name)
        element = found[0] if found else None
        if element is None:
            return None
    return element


def _text(element: etree._Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def _ii(element: etree._Element | None) -> InstanceId | None:
    if element is None or not element.get("root"):
        return None
    return InstanceId(element.get("root", ""), element.get("extension") or None)


def read_header(payload: etree._Element) -> Header:
    """Message id, sender device and reasonCode; the message id is required (the answer's
    targetMessage names it)."""
    control = _child(payload, "controlActProcess")
    device = _child(payload, "sender", "device")
    sender = _ii(_child(device, "id"))
    reason = _child(control, "reasonCode")
    return Header(
        message_id=_ii(_child(payload, "id")),
        sender_root=sender.root if sender is not None else None,
        sender_name=_text(_child(device, "softwareName")),
        reason=reason.get("code") if reason is not None else None,
        query_id=_ii(_child(control, "queryByParameter", "queryId")),
    )


def require_message_id(header: Header) -> None:
    """The answer's targetMessage must name the request: a message without id is refused."""
    if header.message_id is None:
        raise Hl7Error(dv.MISSING_ELEMENT, "the message has no id (id/@root)")


def query_patient_id(payload: etree._Element) -> InstanceId:
    """TD0.2 / TD1.3a: queryByParameter/parameterList/patientIdentifier/value."""
    control = _child(payload, "controlActProcess")
    if control is None:
        raise Hl7Error(dv.MISSING_ELEMENT, "controlActProcess is missing")
    value = _ii(_child(control, "queryByParameter", "parameterList", "patientIdentifier", "value"))
    if value is None or not value.extension:
        raise Hl7Error(
            dv.MISSING_ELEMENT,
            "queryByParameter/parameterList/patientIdentifier/value (root, extension) is missing",
        )
    return value


@dataclass
class PatientRequest:
    """What a creation (PRPA_IN201311UV02) or revision (PRPA_IN201314UV02) says."""

    ids: list[InstanceId]
    status: str | None
    identity: Identity
    oppositions: Oppositions
    observations: dict[str, bool] = field(default_factory=dict)
    closing_reason: str | None = None


def read_patient_request(payload: etree._Element) -> PatientRequest:
    control = _child(payload, "controlActProcess")
    if control is None:
        raise Hl7Error(dv.MISSING_ELEMENT, "controlActProcess is missing")
    patient = _child(control, "subject", "registrationRequest", "subject1", "patient")
    if patient is None:
        raise Hl7Error(
            dv.MISSING_ELEMENT, "subject/registrationRequest/subject1/patient is missing"
        )
    ids = [i for i in map(_ii, _children(patient, "id")) if i is not None and i.extension]
    if not ids:
        raise Hl7Error(dv.MISSING_ELEMENT, "patient/id (root and extension) is missing")
    status = _child(patient, "statusCode")
    observations: dict[str, bool] = {}
    for subject in _children(patient, "subjectOf"):
        observation = _child(subject, "administrativeObservation")
        code = _child(observation, "code")
        value = _child(observation, "value")
        if code is None or not code.get("code"):
            continue
        if value is None or value.get("value") not in ("true", "false"):
            raise Hl7Error(
                dv.WRONG_VALUE, f"administrativeObservation {code.get('code')}: value must be BL"
            )
        observations[code.get("code", "")] = value.get("value") == "true"
    reason = _child(control, "reasonOf", "detectedIssueEvent", "code")
    return PatientRequest(
        ids=ids,
        status=status.get("code") if status is not None else None,
        identity=read_person(_child(patient, "patientPerson")),
        oppositions=Oppositions(
            observations.get(dv.OPPOSITION_BRIS_DE_GLACE),
            observations.get(dv.OPPOSITION_ACCES_URGENCE),
        ),
        observations=observations,
        closing_reason=reason.get("code") if reason is not None else None,
    )


def read_person(person: etree._Element | None) -> Identity:
    """patientPerson -> Identity; absent elements stay None (a revision leaves them alone)."""
    identity = Identity()
    if person is None:
        return identity
    name = _child(person, "name")
    if name is not None:
        identity.prefix = _text(_child(name, "prefix"))
        identity.given = _text(_child(name, "given"))
        for family in _children(name, "family"):
            if family.get("qualifier") == "BR":
                identity.birth_name = _text(family)
            elif identity.family is None:
                identity.family = _text(family)
    telecoms = _children(person, "telecom")
    if telecoms:
        identity.telecoms = [element_json(t) for t in telecoms]
    gender = _child(person, "administrativeGenderCode")
    if gender is not None:
        identity.gender = gender.get("code")
    birth = _child(person, "birthTime")
    if birth is not None:
        identity.birth_date = birth.get("value")
    deceased = _child(person, "deceasedInd")
    if deceased is not None and deceased.get("value") in ("true", "false"):
        identity.deceased = deceased.get("value") == "true"
    addresses = _children(person, "addr")
    if addresses:
        identity.addresses = [element_json(a) for a in addresses]
    relationships = _children(person, "personalRelationship")
    if relationships:
        identity.relationships = [element_json(r) for r in relationships]
    birth_place = _child(person, "birthPlace")
    if birth_place is not None:
        identity.birth_place = element_json(birth_place)
    return identity


def read_traits(payload: etree._Element) -> tuple[Traits, InstanceId | None]:
    """PDQv3 (TD0.5) query parameters, and a patient id if one was asked for."""
    parameters = _child(payload, "controlActProcess", "queryByParameter", "parameterList")
    if parameters is None:
        raise Hl7Error(dv.MISSING_ELEMENT, "queryByParameter/parameterList is missing")
    name = _child(parameters, "livingSubjectName", "value")
    birth = _child(parameters, "livingSubjectBirthTime", "value")
    gender = _child(parameters, "livingSubjectAdministrativeGender", "value")
    address = _child(parameters, "patientAddress", "value")
    traits = Traits(
        family=_text(_child(name, "family")),
        given=_text(_child(name, "given")),
        birth_date=birth.get("value") if birth is not None else None,
        gender=gender.get("code") if gender is not None else None,
        postal_code=_text(_child(address, "postalCode")),
        city=_text(_child(address, "city")),
    )
    return traits, _ii(_child(parameters, "livingSubjectId", "value"))


def element_json(element: etree._Element) -> dict[str, Any]:
    """An HL7 element (telecom, addr, personalRelationship...) as JSON, to give it back as it
    came (namespaced attributes such as ``xsi:type`` keep their Clark name)."""
    return {
        "tag": etree.QName(element).localname,
        "attrs": dict(element.attrib),
        "text": _text(element),
        "children": [
            element_json(c)
            for c in element
            if isinstance(c.tag, str) and c.tag.startswith(H) and c.get(_XSI_NIL) != "true"
        ],
    }


def json_element(parent: etree._Element, data: dict[str, Any]) -> etree._Element:
    element = etree.SubElement(parent, H + data["tag"])
    for name, value in data.get("attrs", {}).items():
        element.set(name, value)
    if data.get("text"):
        element.text = data["text"]
    for child in data.get("children", []):
        json_element(element, child)
    return element


# --- writing ---------------------------------------------------------------------------------
def _sub(
    parent: etree._Element, name: str, text: str | None = None, **attrs: str
) -> etree._Element:
    element = etree.SubElement(parent, H + name, {k: v for k, v in attrs.items()})
    if text is not None:
        element.text = text
    return element


def _set_ii(element: etree._Element, ii: InstanceId) -> etree._Element:
    element.set("root", ii.root)
    if ii.extension:
        element.set("extension", ii.extension)
    return element


def hl7_time(moment: dt.datetime | None = None) -> str:
    return (moment or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")


def _device(parent: etree._Element, role: str, type_code: str, root: str, name: str | None) -> None:
    device = _sub(
        _sub(parent, role, typeCode=type_code), "device", classCode="DEV", determinerCode="INSTANCE"
    )
    _sub(device, "id", root=root)
    if name:
        _sub(device, "softwareName", name)


def message(
    tag: str,
    header: Header,
    parent: etree._Element | None = None,
) -> etree._Element:
    """The transmission wrapper of an answer, up to (not including) attentionLine."""
    if parent is None:
        root = etree.Element(H + tag, {"ITSVersion": "XML_1.0"}, nsmap=_NSMAP)  # type: ignore[arg-type]
    else:
        root = _sub(parent, tag, ITSVersion="XML_1.0")
    _sub(root, "id", root=dv.DMP_MESSAGE_ID_ROOT, extension=str(uuid.uuid4()))
    _sub(root, "creationTime", value=hl7_time())
    _sub(root, "interactionId", root=dv.INTERACTION_ROOT, extension=tag)
    _sub(root, "processingCode", code="P")
    _sub(root, "processingModeCode", code="T")
    _sub(root, "acceptAckCode", code="NE")
    _device(root, "receiver", "RCV", header.sender_root or "0", header.sender_name)
    _device(root, "sender", "SND", dv.DMP_OID, "DMP")
    return root


def acknowledgement(
    root: etree._Element,
    header: Header,
    type_code: str,
    detail: tuple[str, str] | None = None,
    *,
    element_form: bool = False,
) -> None:
    """``acknowledgement typeCode=AA|AE`` with the request's id and, for errors, one
    acknowledgementDetail (code, text). ``element_form``: ``<typeCode code=…/>`` as a child,
    the form of the DMP's PDQ answer."""
    ack = _sub(root, "acknowledgement")
    if element_form:
        _sub(ack, "typeCode", code=type_code)
    else:
        ack.set("typeCode", type_code)
    target = _sub(ack, "targetMessage")
    if header.message_id is not None:
        _set_ii(_sub(target, "id"), header.message_id)
    if detail is not None:
        item = _sub(ack, "acknowledgementDetail", typeCode="E")
        code = _sub(item, "code", code=detail[0])
        if detail[0].startswith("SYN"):
            code.set("codeSystem", dv.ACK_DETAIL_SYSTEM)
        _sub(item, "text", detail[1])


def attention_line(root: etree._Element, keyword: str, system: str, value: etree._Element) -> None:
    line = _sub(root, "attentionLine")
    _sub(line, "keyWordText", code=keyword, codeSystem=system)
    line.append(value)


def cv_value(code: str, system: str) -> etree._Element:
    return etree.Element(
        H + "value", {"code": code, "codeSystem": system, _XSI_TYPE: "CV"}, nsmap={"xsi": XSI}
    )


def bl_value(value: bool) -> etree._Element:
    return etree.Element(
        H + "value", {"value": "true" if value else "false", _XSI_TYPE: "BL"}, nsmap={"xsi": XSI}
    )


def control_act(root: etree._Element, reason: str | None) -> etree._Element:
    control = _sub(root, "controlActProcess", classCode="CACT", moodCode="EVN")
    if reason:
        _sub(
            control,
            "reasonCode",
            code=reason,
            codeSystem=dv.REASON_SYSTEM,
            displayName=dv.REASON_DISPLAY.get(reason, reason),
        )
    return control


def registration_event(
    control: etree._Element, *, event_status: str = "completed", subject1: str = "subject1"
) -> tuple[etree._Element, etree._Element]:
    """subject/registrationEvent with its subject1/patient; returns (registrationEvent, patient).
    The custodian (the DMP) is added by :func:`custodian` after the patient is filled."""
    event = _sub(
        _sub(control, "subject", typeCode="SUBJ", contextConductionInd="false"),
        "registrationEvent",
        classCode="REG",
        moodCode="EVN",
    )
    _sub(event, "statusCode", code=event_status)
    patient = _sub(_sub(event, subject1, typeCode="SBJ"), "patient", classCode="PAT")
    return event, patient


def custodian(event: etree._Element) -> None:
    entity = _sub(_sub(event, "custodian", typeCode="CST"), "assignedEntity", classCode="ASSIGNED")
    _sub(entity, "id", root=dv.DMP_OID)


def patient_ids(patient: etree._Element, record: Record) -> None:
    """The record's other ids (INS-C first, as the DMP answers) then its INS."""
    for other in record.other_ids:
        _set_ii(_sub(patient, "id"), InstanceId(other["root"], other.get("extension")))
    matricule, _, rest = record.patient_id.partition("^^^&")
    _set_ii(_sub(patient, "id"), InstanceId(rest.split("&")[0], matricule))


def record_status_code(record: Record) -> str:
    return "active" if record.is_open else "terminated"


def person(patient: etree._Element, record: Record, *, full: bool, name_only: bool = False) -> None:
    """patientPerson: name (always), telecoms, gender and birth date; ``full`` adds deceased
    flag, addresses, legal representatives and birth place (TD1.3a)."""
    identity = record.identity
    p = _sub(patient, "patientPerson", classCode="PSN", determinerCode="INSTANCE")
    name = _sub(p, "name")
    if identity.prefix:
        _sub(name, "prefix", identity.prefix)
    if identity.given:
        _sub(name, "given", identity.given)
    if identity.family:
        _sub(name, "family", identity.family, qualifier="SP")
    if identity.birth_name:
        _sub(name, "family", identity.birth_name, qualifier="BR")
    if name_only:
        return
    for telecom in identity.telecoms or []:
        json_element(p, telecom)
    if identity.gender:
        _sub(p, "administrativeGenderCode", code=identity.gender)
    if identity.birth_date:
        _sub(p, "birthTime", value=identity.birth_date)
    if not full:
        return
    _sub(p, "deceasedInd", value="true" if identity.deceased else "false")
    for address in identity.addresses or []:
        json_element(p, address)
    for relationship in identity.relationships or []:
        json_element(p, relationship)
    if identity.birth_place is not None:
        json_element(p, identity.birth_place)


def observation(
    patient: etree._Element,
    code: str,
    system: str,
    value: bool,
    display: str | None = None,
    *,
    wrapper: str = "subjectOf",
) -> None:
    subject = (
        _sub(patient, wrapper, typeCode="SBJ") if wrapper == "subjectOf" else _sub(patient, wrapper)
    )
    obs = _sub(subject, "administrativeObservation", classCode="OBS", moodCode="EVN")
    code_element = _sub(obs, "code", code=code, codeSystem=system)
    if display:
        code_element.set("displayName", display)
    obs.append(bl_value(value))


def query_ack(control: etree._Element, header: Header, response_code: str) -> etree._Element:
    ack = _sub(control, "queryAck")
    if header.query_id is not None:
        _set_ii(_sub(ack, "queryId"), header.query_id)
    _sub(ack, "queryResponseCode", code=response_code)
    return ack


def wrapper(name: str) -> etree._Element:
    """``ns2:PRPA_IN2013xxUV02_Response`` (asip:ci-sis:gdp:2010) around the HL7 answer."""
    return etree.Element(f"{{{dv.GDP_NS}}}{name}", nsmap={None: HL7V3, "ns2": dv.GDP_NS})  # type: ignore[dict-item]
