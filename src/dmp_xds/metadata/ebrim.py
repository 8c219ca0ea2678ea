"""ebRIM 3.0 <-> domain model: the one place that knows the wire shape of XDS metadata.

:func:`parse_submission` reads a ``lcm:SubmitObjectsRequest`` into a :class:`Submission`,
resolving symbolic ids to fresh UUIDs and collecting every structural problem as an
:class:`XdsError` instead of stopping at the first. The response builders at the bottom write
RegistryResponse and AdhocQueryResponse payloads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lxml import etree

from ..errors import ErrorCode, Severity, XdsError
from ..namespaces import LCM, QUERY, RIM, RS
from . import vocabulary as v
from .datatypes import is_uuid_urn, new_uuid_urn
from .model import (
    Association,
    Author,
    Code,
    DocumentEntry,
    Folder,
    RegistryObject,
    Submission,
    SubmissionSet,
)

_R = f"{{{RIM}}}"
_REFERENCE_ATTRIBUTES = ("classifiedObject", "registryObject", "sourceObject", "targetObject")

# Slots that hold exactly one value (ITI TF-3 4.2.3); a second value is a metadata error.
SINGLE_VALUED_SLOTS = frozenset(
    {
        "creationTime",
        "serviceStartTime",
        "serviceStopTime",
        "hash",
        "size",
        "languageCode",
        "legalAuthenticator",
        "sourcePatientId",
        "repositoryUniqueId",
        "submissionTime",
        "lastUpdateTime",
        "documentAvailability",
        "SubmissionSetStatus",
        "authorPerson",
        "codingScheme",
    }
)


def rim(tag: str) -> str:
    return _R + tag


def slot_values(element: etree._Element) -> dict[str, list[str]]:
    """Direct child slots of ``element`` as ``name -> values`` (later duplicates are ignored;
    :func:`parse_submission` reports them)."""
    result: dict[str, list[str]] = {}
    for slot in element.iterchildren(rim("Slot")):
        name = slot.get("name", "")
        if name not in result:
            result[name] = [
                (val.text or "").strip() for val in slot.iterfind(f"{_R}ValueList/{_R}Value")
            ]
    return result


def localized_text(element: etree._Element, tag: str) -> str | None:
    node = element.find(f"{_R}{tag}/{_R}LocalizedString")
    return None if node is None else node.get("value")


def set_slot(element: etree._Element, name: str, values: Sequence[str]) -> None:
    """Add or replace slot ``name``, keeping ebRIM's element order (slots come first)."""
    for slot in element.findall(rim("Slot")):
        if slot.get("name") == name:
            element.remove(slot)
    slot = etree.Element(rim("Slot"), name=name)
    value_list = etree.SubElement(slot, rim("ValueList"))
    for value in values:
        etree.SubElement(value_list, rim("Value")).text = value
    existing = element.findall(rim("Slot"))
    if existing:
        existing[-1].addnext(slot)
    else:
        element.insert(0, slot)
    slot.tail = None


class _Parser:
    def __init__(self) -> None:
        self.errors: list[XdsError] = []

    def error(self, code: ErrorCode, message: str, location: str) -> None:
        self.errors.append(XdsError(code, message, location))

    def metadata_error(self, message: str, location: str) -> None:
        self.error(ErrorCode.REGISTRY_METADATA, message, location)

    # --- generic pieces ---------------------------------------------------------------------
    def slots(self, element: etree._Element, where: str) -> dict[str, list[str]]:
        seen: set[str] = set()
        for slot in element.iterchildren(rim("Slot")):
            name = slot.get("name", "")
            if name in seen:
                self.metadata_error(f"slot {name!r} appears more than once", where)
            seen.add(name)
        values = slot_values(element)
        for name, vals in values.items():
            if name in SINGLE_VALUED_SLOTS and len(vals) != 1:
                self.metadata_error(
                    f"slot {name!r} must have exactly one value, has {len(vals)}",
                    f"{where} / {name}",
                )
        return values

    def single(self, values: dict[str, list[str]], name: str) -> str | None:
        vals = values.get(name)
        return vals[0] if vals else None

    def code(self, cl: etree._Element, where: str) -> Code | None:
        rep = cl.get("nodeRepresentation")
        scheme = self.slots(cl, where).get("codingScheme") or []
        if not rep:
            self.metadata_error("coded value without nodeRepresentation (code)", where)
            return None
        if len(scheme) != 1 or not scheme[0]:
            self.metadata_error(f"code {rep!r} has no codingScheme slot with one value", where)
            return None
        return Code(rep, scheme[0], localized_text(cl, "Name"))

    def author(self, cl: etree._Element, where: str) -> Author:
        s = self.slots(cl, where)
        author = Author(
            person=self.single(s, "authorPerson"),
            institutions=s.get("authorInstitution", []),
            roles=s.get("authorRole", []),
            specialties=s.get("authorSpecialty", []),
            telecoms=s.get("authorTelecommunication", []),
        )
        if not (author.person or author.institutions):
            self.metadata_error("author has neither authorPerson nor authorInstitution", where)
        return author

    def common(self, obj: RegistryObject, element: etree._Element) -> None:
        obj.lid = element.get("lid")
        obj.status = element.get("status")
        obj.home_community_id = element.get("home")
        obj.title = localized_text(element, "Name")
        obj.comments = localized_text(element, "Description")
        info = element.find(rim("VersionInfo"))
        obj.version = None if info is None else info.get("versionName")

    def external_ids(self, element: etree._Element, where: str) -> dict[str, str]:
        result: dict[str, str] = {}
        for ei in element.iterchildren(rim("ExternalIdentifier")):
            scheme = ei.get("identificationScheme", "")
            if scheme in result:
                self.metadata_error(f"external identifier {scheme} appears twice", where)
            if ei.get("registryObject") not in (None, element.get("id")):
                self.metadata_error(
                    "ExternalIdentifier.registryObject does not name its parent", where
                )
            result[scheme] = ei.get("value", "")
        return result

    def classifications(self, element: etree._Element) -> list[etree._Element]:
        own = element.get("id")
        result = []
        for cl in element.iterchildren(rim("Classification")):
            if cl.get("classifiedObject") not in (None, own):
                self.metadata_error(
                    "Classification.classifiedObject does not name its parent",
                    f"{element.get('id')} / Classification {cl.get('id')}",
                )
            result.append(cl)
        return result

    # --- objects ----------------------------------------------------------------------------
    def document_entry(self, el: etree._Element) -> DocumentEntry:
        doc = DocumentEntry(id=el.get("id", ""), element=el)
        where = doc.label
        self.common(doc, el)
        doc.object_type = el.get("objectType", "")
        doc.mime_type = el.get("mimeType")
        s = self.slots(el, where)
        doc.creation_time = self.single(s, "creationTime")
        doc.service_start_time = self.single(s, "serviceStartTime")
        doc.service_stop_time = self.single(s, "serviceStopTime")
        doc.hash = self.single(s, "hash")
        doc.size = self.single(s, "size")
        doc.repository_unique_id = self.single(s, "repositoryUniqueId")
        doc.language_code = self.single(s, "languageCode")
        doc.legal_authenticator = self.single(s, "legalAuthenticator")
        doc.source_patient_id = self.single(s, "sourcePatientId")
        doc.source_patient_info = s.get("sourcePatientInfo", [])
        doc.reference_ids = s.get("urn:ihe:iti:xds:2013:referenceIdList", [])
        doc.availability = self.single(s, "documentAvailability")
        single_codes = {
            v.DE_CLASS_CODE: "class_code",
            v.DE_TYPE_CODE: "type_code",
            v.DE_FORMAT_CODE: "format_code",
            v.DE_FACILITY_CODE: "facility_code",
            v.DE_PRACTICE_CODE: "practice_code",
        }
        for cl in self.classifications(el):
            scheme = cl.get("classificationScheme")
            cwhere = f"{where} / Classification {cl.get('id')}"
            if cl.get("classificationNode") == v.LIMITED_METADATA_DE:
                doc.limited_metadata = True
            elif scheme == v.DE_AUTHOR:
                doc.authors.append(self.author(cl, cwhere))
            elif scheme in single_codes:
                attr = single_codes[scheme]
                if getattr(doc, attr) is not None:
                    self.metadata_error(f"{_camel(attr)} appears more than once", where)
                setattr(doc, attr, self.code(cl, cwhere))
            elif scheme == v.DE_CONFIDENTIALITY_CODE:
                code = self.code(cl, cwhere)
                if code:
                    doc.confidentiality_codes.append(code)
            elif scheme == v.DE_EVENT_CODE:
                code = self.code(cl, cwhere)
                if code:
                    doc.event_codes.append(code)
        ids = self.external_ids(el, where)
        doc.patient_id = ids.get(v.DE_PATIENT_ID)
        doc.unique_id = ids.get(v.DE_UNIQUE_ID)
        return doc

    def package(self, el: etree._Element, node: str | None) -> SubmissionSet | Folder | None:
        if node == v.SUBMISSION_SET_NODE:
            return self.submission_set(el)
        if node == v.FOLDER_NODE:
            return self.folder(el)
        self.metadata_error(
            "RegistryPackage is classified neither as SubmissionSet nor as Folder",
            f"RegistryPackage {el.get('id')}",
        )
        return None

    def submission_set(self, el: etree._Element) -> SubmissionSet:
        ss = SubmissionSet(id=el.get("id", ""), element=el)
        where = ss.label
        self.common(ss, el)
        s = self.slots(el, where)
        ss.submission_time = self.single(s, "submissionTime")
        ss.intended_recipients = s.get("intendedRecipient", [])
        for cl in self.classifications(el):
            scheme = cl.get("classificationScheme")
            cwhere = f"{where} / Classification {cl.get('id')}"
            if cl.get("classificationNode") == v.LIMITED_METADATA_SS:
                ss.limited_metadata = True
            elif scheme == v.SS_AUTHOR:
                ss.authors.append(self.author(cl, cwhere))
            elif scheme == v.SS_CONTENT_TYPE_CODE:
                if ss.content_type_code is not None:
                    self.metadata_error("contentTypeCode appears more than once", where)
                ss.content_type_code = self.code(cl, cwhere)
        ids = self.external_ids(el, where)
        ss.patient_id = ids.get(v.SS_PATIENT_ID)
        ss.unique_id = ids.get(v.SS_UNIQUE_ID)
        ss.source_id = ids.get(v.SS_SOURCE_ID)
        return ss

    def folder(self, el: etree._Element) -> Folder:
        fol = Folder(id=el.get("id", ""), element=el)
        where = fol.label
        self.common(fol, el)
        s = self.slots(el, where)
        fol.last_update_time = self.single(s, "lastUpdateTime")
        for cl in self.classifications(el):
            if cl.get("classificationScheme") == v.FOLDER_CODE_LIST:
                code = self.code(cl, f"{where} / Classification {cl.get('id')}")
                if code:
                    fol.codes.append(code)
        ids = self.external_ids(el, where)
        fol.patient_id = ids.get(v.FOLDER_PATIENT_ID)
        fol.unique_id = ids.get(v.FOLDER_UNIQUE_ID)
        return fol

    def association(self, el: etree._Element) -> Association:
        assoc = Association(
            id=el.get("id", ""),
            element=el,
            type=el.get("associationType", ""),
            source=el.get("sourceObject", ""),
            target=el.get("targetObject", ""),
        )
        self.common(assoc, el)
        s = self.slots(el, assoc.label)
        assoc.submission_set_status = self.single(s, "SubmissionSetStatus")
        return assoc


def parse_document_entry(element: etree._Element) -> DocumentEntry:
    """A stored DocumentEntry fragment (registry-made, so already valid) as the model, for
    comparing a new metadata version with the one it replaces."""
    return _Parser().document_entry(element)


def _camel(attr: str) -> str:
    head, *rest = attr.split("_")
    return head + "".join(p.title() for p in rest)


def _package_node(package: etree._Element, top_level: list[etree._Element]) -> str | None:
    """The SubmissionSet/Folder classification node of a RegistryPackage, nested or top level."""
    pid = package.get("id")
    for cl in package.iterchildren(rim("Classification")):
        if cl.get("classificationNode") in (v.SUBMISSION_SET_NODE, v.FOLDER_NODE):
            return cl.get("classificationNode")
    for cl in top_level:
        if cl.get("classifiedObject") == pid:
            return cl.get("classificationNode")
    return None


def resolve_symbolic_ids(objects: Iterable[etree._Element]) -> dict[str, str]:
    """Give every symbolic (non-UUID) id a fresh UUID and rewrite references in place.

    ``objects`` are the top-level elements; nested Classification and ExternalIdentifier ids
    are resolved too, since the registry answers LeafClass with them. UUID URNs compare
    case-insensitively, so they are kept in lower case. The id and reference attributes are
    found by libxml2 (one XPath per object), then resolved from that one list.
    """
    symbols: dict[str, str] = {}
    symbolic: list[tuple[etree._Element, str, str]] = []
    for top in objects:
        for found in _ID_ATTRIBUTES(top):
            element, attr, value = found.getparent(), found.attrname, str(found)
            if is_uuid_urn(value):
                if value != value.lower():
                    element.set(attr, value.lower())
                continue
            if attr == "id" and value not in symbols:
                symbols[value] = new_uuid_urn()
            symbolic.append((element, attr, value))
    for element, attr, value in symbolic:
        if value in symbols:
            element.set(attr, symbols[value])
    return symbols


_ID_ATTRIBUTES = etree.XPath(
    "descendant-or-self::rim:*/@*["
    + " or ".join(f"name() = '{a}'" for a in ("id", "lid", *_REFERENCE_ATTRIBUTES))
    + "]",
    namespaces={"rim": RIM},
)


def parse_submission(request: etree._Element) -> tuple[Submission, list[XdsError]]:
    """Parse a ``lcm:SubmitObjectsRequest`` (ITI-41's inner request, ITI-42, ITI-57).

    The elements are modified in place: symbolic ids become UUIDs and top-level
    SubmissionSet/Folder classifications move inside their package.
    """
    parser = _Parser()
    submission = Submission()
    if request.tag != f"{{{LCM}}}SubmitObjectsRequest":
        parser.metadata_error(
            f"expected lcm:SubmitObjectsRequest, got {etree.QName(request).localname}",
            "SubmitObjectsRequest",
        )
        return submission, parser.errors
    object_list = request.find(rim("RegistryObjectList"))
    if object_list is None:
        parser.metadata_error(
            "SubmitObjectsRequest has no RegistryObjectList", "RegistryObjectList"
        )
        return submission, parser.errors
    children = [c for c in object_list if isinstance(c.tag, str)]
    for el in children:
        if el.tag != rim("ObjectRef") and not el.get("id"):
            parser.metadata_error(
                f"{etree.QName(el).localname} without id attribute", etree.QName(el).localname
            )
    submission.symbols = resolve_symbolic_ids(children)
    top_classifications = [c for c in children if c.tag == rim("Classification")]
    for el in children:
        tag = etree.QName(el).localname
        if tag == "ExtrinsicObject":
            submission.documents.append(parser.document_entry(el))
        elif tag == "RegistryPackage":
            pkg = parser.package(el, _package_node(el, top_classifications))
            if isinstance(pkg, SubmissionSet):
                submission.submission_sets.append(pkg)
            elif isinstance(pkg, Folder):
                submission.folders.append(pkg)
        elif tag == "Association":
            submission.associations.append(parser.association(el))
        elif tag == "ObjectRef":
            submission.object_refs.append(el.get("id", ""))
        elif tag != "Classification":
            parser.metadata_error(f"unexpected object {tag} in RegistryObjectList", tag)
    submitted = {resolved: symbolic for symbolic, resolved in submission.symbols.items()}
    for obj in submission.objects():
        obj.submitted_id = submitted.get(obj.id, obj.id)
    packages = {p.id: p for p in (*submission.submission_sets, *submission.folders)}
    for cl in top_classifications:
        target = packages.get(cl.get("classifiedObject", ""))
        node = cl.get("classificationNode")
        if target is None or node not in (v.SUBMISSION_SET_NODE, v.FOLDER_NODE):
            parser.metadata_error(
                "top-level Classification must classify a RegistryPackage of this submission "
                "as SubmissionSet or Folder",
                f"Classification {cl.get('id')}",
            )
            continue
        _move_classification(target.element, cl)
    return submission, parser.errors


def _move_classification(package: etree._Element, cl: etree._Element) -> None:
    """Nest a top-level classification in its package, before its ExternalIdentifiers."""
    anchor = package.find(rim("ExternalIdentifier"))
    if anchor is not None:
        anchor.addprevious(cl)
    else:
        package.append(cl)


# --- responses --------------------------------------------------------------------------------


def response_status(errors: Sequence[XdsError], *, partial: bool = False) -> str:
    if any(e.is_error for e in errors):
        return v.RESPONSE_PARTIAL if partial else v.RESPONSE_FAILURE
    return v.RESPONSE_SUCCESS


def add_error_list(parent: etree._Element, errors: Sequence[XdsError]) -> None:
    if not errors:
        return
    error_list = etree.SubElement(parent, f"{{{RS}}}RegistryErrorList")
    worst = Severity.ERROR if any(e.is_error for e in errors) else Severity.WARNING
    error_list.set("highestSeverity", worst.value)
    for err in errors:
        node = etree.SubElement(error_list, f"{{{RS}}}RegistryError")
        node.set("errorCode", err.code.value)
        node.set("codeContext", err.message)
        node.set("severity", err.severity.value)
        if err.location:
            node.set("location", err.location)


def registry_response(
    errors: Sequence[XdsError] = (), *, status: str | None = None
) -> etree._Element:
    """An ``rs:RegistryResponse`` (status derived from the errors unless given)."""
    root = etree.Element(f"{{{RS}}}RegistryResponse", nsmap={"rs": RS})
    root.set("status", status or response_status(errors))
    add_error_list(root, errors)
    return root


def adhoc_query_response(
    objects: Sequence[etree._Element] = (),
    errors: Sequence[XdsError] = (),
    *,
    status: str | None = None,
) -> etree._Element:
    """A ``query:AdhocQueryResponse``; ``objects`` are LeafClass elements or ObjectRefs."""
    root = etree.Element(
        f"{{{QUERY}}}AdhocQueryResponse", nsmap={"query": QUERY, "rim": RIM, "rs": RS}
    )
    root.set("status", status or response_status(errors))
    add_error_list(root, errors)
    object_list = etree.SubElement(root, rim("RegistryObjectList"))
    object_list.extend(objects)
    return root


def object_ref(entry_uuid: str) -> etree._Element:
    return etree.Element(rim("ObjectRef"), id=entry_uuid)
