"""Building an ITI-41 submission from :class:`EntryMetadata`, and the sidecar overrides.

A producer derives most of a DocumentEntry from the document (:mod:`dmp_xds.cda.metadata`);
what the document does not say, or says wrongly for the target registry, comes from a sidecar
file: ``<document>.meta.json`` beside it, a JSON object whose keys are XDS DocumentEntry
attribute names (``typeCode``, ``practiceSettingCode``, ``confidentialityCode``, ``author``...).
A sidecar value replaces the derived one. Unknown keys are refused, so that a misspelt key is
an error instead of a silently ignored override.

Codes are written either as ``{"code": ..., "codingScheme": ..., "displayName": ...}`` or in the
stored-query form ``"code^^codingScheme"``; multi-valued attributes take a list.

The ebRIM is built here with lxml (SubmissionSet, DocumentEntries, HasMember associations, in
the shape DMP software sends), so the client never shows the server anything the domain model
did not describe.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree

from ..cda.metadata import EntryMetadata
from ..metadata import vocabulary as v
from ..metadata.model import Author, Code
from ..namespaces import LCM, RIM

_R = f"{{{RIM}}}"
MIME_TYPE_SUFFICIENT = Code(
    "urn:ihe:iti:xds:2017:mimeTypeSufficient", "1.3.6.1.4.1.19376.1.2.3", "Format from mimeType"
)
"""formatCode of a document that is not CDA (a bare PDF): its mimeType says all there is."""

REQUIRED = {
    "patientId": "patient_id",
    "uniqueId": "unique_id",
    "mimeType": "mime_type",
    "classCode": "class_code",
    "typeCode": "type_code",
    "formatCode": "format_code",
    "healthcareFacilityTypeCode": "facility_code",
    "practiceSettingCode": "practice_code",
    "confidentialityCode": "confidentiality_codes",
    "languageCode": "language_code",
    "creationTime": "creation_time",
}
"""The DocumentEntry attributes ITI-41 cannot do without (ITI TF-3 4.2.3.2, DMP), by XDS name."""

COMPUTED = frozenset({"hash", "size", "repositoryUniqueId"})
"""Attributes the producer or the repository computes: a sidecar cannot set them."""


class SidecarError(ValueError):
    """A sidecar value that is not what its attribute takes."""


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SidecarError(f"{name} must be a non-empty string")
    return value.strip()


def _texts(value: Any, name: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list):
        raise SidecarError(f"{name} must be a string or a list of strings")
    return [_text(item, name) for item in values]


def parse_code(value: Any, name: str = "code") -> Code:
    """A coded value from a sidecar: ``{"code", "codingScheme", "displayName"}`` or
    ``"code^^codingScheme"``."""
    if isinstance(value, str):
        code, sep, scheme = value.partition("^^")
        if not sep or not code or not scheme:
            raise SidecarError(f"{name} {value!r} is not 'code^^codingScheme'")
        return Code(code, scheme, code)
    if isinstance(value, dict):
        unknown = set(value) - {"code", "codingScheme", "displayName"}
        if unknown:
            raise SidecarError(f"{name} has unknown keys {sorted(unknown)}")
        code = _text(value.get("code"), f"{name}.code")
        scheme = _text(value.get("codingScheme"), f"{name}.codingScheme")
        display = value.get("displayName")
        return Code(code, scheme, _text(display, f"{name}.displayName") if display else code)
    raise SidecarError(f"{name} must be an object or a 'code^^codingScheme' string")


def _codes(value: Any, name: str) -> list[Code]:
    values = value if isinstance(value, list) else [value]
    return [parse_code(item, name) for item in values]


_AUTHOR_KEYS = {
    "authorPerson": "person",
    "authorInstitution": "institutions",
    "authorRole": "roles",
    "authorSpecialty": "specialties",
    "authorTelecommunication": "telecoms",
}


def _authors(value: Any, name: str) -> list[Author]:
    items = value if isinstance(value, list) else [value]
    authors = []
    for item in items:
        if not isinstance(item, dict) or set(item) - set(_AUTHOR_KEYS):
            raise SidecarError(
                f"{name} must be a list of objects with keys among {sorted(_AUTHOR_KEYS)}"
            )
        author = Author()
        for key, attr in _AUTHOR_KEYS.items():
            if key not in item:
                continue
            if attr == "person":
                author.person = _text(item[key], key)
            else:
                setattr(author, attr, _texts(item[key], key))
        authors.append(author)
    return authors


def _time(value: Any, name: str) -> str:
    text = _text(value, name)
    if not text.isdigit() or len(text) not in (4, 6, 8, 10, 12, 14):
        raise SidecarError(f"{name} must be a UTC time YYYY[MM[DD[hh[mm[ss]]]]]")
    return text


_Setter = tuple[str, Callable[[Any, str], Any]]
SIDECAR_FIELDS: dict[str, _Setter] = {
    "patientId": ("patient_id", _text),
    "uniqueId": ("unique_id", _text),
    "mimeType": ("mime_type", _text),
    "title": ("title", _text),
    "comments": ("comments", _text),
    "classCode": ("class_code", parse_code),
    "typeCode": ("type_code", parse_code),
    "formatCode": ("format_code", parse_code),
    "healthcareFacilityTypeCode": ("facility_code", parse_code),
    "practiceSettingCode": ("practice_code", parse_code),
    "confidentialityCode": ("confidentiality_codes", _codes),
    "eventCodeList": ("event_codes", _codes),
    "creationTime": ("creation_time", _time),
    "serviceStartTime": ("service_start_time", _time),
    "serviceStopTime": ("service_stop_time", _time),
    "languageCode": ("language_code", _text),
    "legalAuthenticator": ("legal_authenticator", _text),
    "sourcePatientId": ("source_patient_id", _text),
    "sourcePatientInfo": ("source_patient_info", _texts),
    "author": ("authors", _authors),
    "referenceIdList": ("reference_ids", _texts),
}
"""Sidecar key (the XDS attribute name) -> (EntryMetadata field, parser)."""


def apply_overrides(entry: EntryMetadata, overrides: Mapping[str, Any]) -> list[str]:
    """Replace ``entry``'s fields with the sidecar's; the problems found (nothing is half
    applied: a bad value leaves its field as derived and is reported)."""
    problems = []
    for key, value in overrides.items():
        if key in COMPUTED:
            problems.append(f"{key} cannot be set: it is computed from the document")
            continue
        if key not in SIDECAR_FIELDS:
            problems.append(f"unknown DocumentEntry attribute {key!r}")
            continue
        attr, parse = SIDECAR_FIELDS[key]
        try:
            setattr(entry, attr, parse(value, key))
        except SidecarError as exc:
            problems.append(str(exc))
        else:
            entry.notes.pop(key, None)
    return problems


def missing_fields(entry: EntryMetadata) -> list[str]:
    """What ITI-41 needs and ``entry`` lacks, each with the reason the document did not give
    it (the producer's advice: set it in the sidecar)."""
    problems = []
    for name, attr in REQUIRED.items():
        if getattr(entry, attr) in (None, "", []):
            why = entry.notes.get(name, "the document does not give it")
            problems.append(f"{name} is missing ({why}); set it in the sidecar file")
    return problems


# --- ebRIM ------------------------------------------------------------------------------------


def _slot(parent: etree._Element, name: str, values: Sequence[str]) -> None:
    slot = etree.SubElement(parent, _R + "Slot", name=name)
    value_list = etree.SubElement(slot, _R + "ValueList")
    for value in values:
        etree.SubElement(value_list, _R + "Value").text = value


def _localized(parent: etree._Element, tag: str, text: str | None) -> None:
    if text:
        node = etree.SubElement(parent, _R + tag)
        etree.SubElement(node, _R + "LocalizedString", value=text[:1024])


def _classification(
    parent: etree._Element, scheme: str, obj: str, cid: str, code: Code
) -> etree._Element:
    cl = etree.SubElement(
        parent,
        _R + "Classification",
        classificationScheme=scheme,
        classifiedObject=obj,
        id=cid,
        nodeRepresentation=code.code,
    )
    _slot(cl, "codingScheme", [code.scheme])
    _localized(cl, "Name", code.display or code.code)
    return cl


def _author(parent: etree._Element, scheme: str, obj: str, cid: str, author: Author) -> None:
    cl = etree.SubElement(
        parent,
        _R + "Classification",
        classificationScheme=scheme,
        classifiedObject=obj,
        id=cid,
        nodeRepresentation="",
    )
    if author.person:
        _slot(cl, "authorPerson", [author.person])
    for name, values in (
        ("authorInstitution", author.institutions),
        ("authorRole", author.roles),
        ("authorSpecialty", author.specialties),
        ("authorTelecommunication", author.telecoms),
    ):
        if values:
            _slot(cl, name, values)


def _external_id(parent: etree._Element, scheme: str, obj: str, eid: str, value: str, name: str):
    ei = etree.SubElement(
        parent,
        _R + "ExternalIdentifier",
        id=eid,
        identificationScheme=scheme,
        registryObject=obj,
        value=value,
    )
    _localized(ei, "Name", name)


def document_entry(did: str, entry: EntryMetadata) -> etree._Element:
    """The ``rim:ExtrinsicObject`` of one DocumentEntry with symbolic id ``did``."""
    eo = etree.Element(
        _R + "ExtrinsicObject", id=did, mimeType=entry.mime_type or "", objectType=v.STABLE_DOCUMENT
    )
    single = (
        ("creationTime", entry.creation_time),
        ("languageCode", entry.language_code),
        ("legalAuthenticator", entry.legal_authenticator),
        ("serviceStartTime", entry.service_start_time),
        ("serviceStopTime", entry.service_stop_time),
        ("sourcePatientId", entry.source_patient_id),
        ("hash", entry.hash),
        ("size", None if entry.size is None else str(entry.size)),
    )
    for name, value in single:
        if value:
            _slot(eo, name, [value])
    if entry.source_patient_info:
        _slot(eo, "sourcePatientInfo", entry.source_patient_info)
    if entry.reference_ids:
        _slot(eo, "urn:ihe:iti:xds:2013:referenceIdList", entry.reference_ids)
    _localized(eo, "Name", entry.title)
    _localized(eo, "Description", entry.comments)
    for n, author in enumerate(entry.authors, start=1):
        _author(eo, v.DE_AUTHOR, did, f"{did}-author{n}", author)
    coded = (
        (v.DE_CLASS_CODE, "class", [entry.class_code]),
        (v.DE_CONFIDENTIALITY_CODE, "conf", entry.confidentiality_codes),
        (v.DE_EVENT_CODE, "event", entry.event_codes),
        (v.DE_FORMAT_CODE, "format", [entry.format_code]),
        (v.DE_FACILITY_CODE, "facility", [entry.facility_code]),
        (v.DE_PRACTICE_CODE, "practice", [entry.practice_code]),
        (v.DE_TYPE_CODE, "type", [entry.type_code]),
    )
    for scheme, label, codes in coded:
        for n, code in enumerate(c for c in codes if c is not None):
            _classification(eo, scheme, did, f"{did}-{label}{n}", code)
    _external_id(
        eo, v.DE_PATIENT_ID, did, f"{did}-pid", entry.patient_id or "", "XDSDocumentEntry.patientId"
    )
    _external_id(
        eo, v.DE_UNIQUE_ID, did, f"{did}-uid", entry.unique_id or "", "XDSDocumentEntry.uniqueId"
    )
    return eo


def new_unique_id() -> str:
    """A fresh OID under the UUID arc 2.25 (ITU-T X.667): unique without a registration."""
    return f"2.25.{uuid.uuid4().int}"


@dataclass(frozen=True)
class SubmissionSetSpec:
    """What the SubmissionSet of every batch says: who submits, from which source."""

    source_id: str
    content_type: Code
    author: Author | None = None
    title: str = "Import dmp-xds"


def submit_objects_request(
    patient_id: str, documents: Sequence[tuple[str, EntryMetadata]], spec: SubmissionSetSpec
) -> etree._Element:
    """A ``lcm:SubmitObjectsRequest``: one SubmissionSet for ``patient_id``, the
    DocumentEntries (symbolic id, metadata) and their HasMember associations."""
    request = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    objects = etree.SubElement(request, _R + "RegistryObjectList")
    ss = "SubmissionSet"
    package = etree.SubElement(objects, _R + "RegistryPackage", id=ss)
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    _slot(package, "submissionTime", [now])
    _localized(package, "Name", spec.title)
    if spec.author is not None:
        _author(package, v.SS_AUTHOR, ss, "SubmissionSet-author", spec.author)
    _classification(package, v.SS_CONTENT_TYPE_CODE, ss, "SubmissionSet-ctc", spec.content_type)
    _external_id(
        package, v.SS_PATIENT_ID, ss, "SubmissionSet-pid", patient_id, "XDSSubmissionSet.patientId"
    )
    _external_id(
        package,
        v.SS_SOURCE_ID,
        ss,
        "SubmissionSet-src",
        spec.source_id,
        "XDSSubmissionSet.sourceId",
    )
    _external_id(
        package,
        v.SS_UNIQUE_ID,
        ss,
        "SubmissionSet-uid",
        new_unique_id(),
        "XDSSubmissionSet.uniqueId",
    )
    for did, entry in documents:
        objects.append(document_entry(did, entry))
    etree.SubElement(
        objects,
        _R + "Classification",
        classificationNode=v.SUBMISSION_SET_NODE,
        classifiedObject=ss,
        id="SubmissionSet-node",
    )
    for did, _entry in documents:
        assoc = etree.SubElement(
            objects,
            _R + "Association",
            associationType=v.HAS_MEMBER,
            id=f"{did}-member",
            sourceObject=ss,
            targetObject=did,
        )
        _slot(assoc, "SubmissionSetStatus", ["Original"])
    return request
