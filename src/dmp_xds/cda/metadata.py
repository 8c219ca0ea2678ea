"""From a CDA R2 document to the DocumentEntry that describes it (the CI-SIS derivation).

The server only *checks* that metadata agree with a CDA header (:mod:`.consistency`); a producer
(``dmp-xds submit``, ``dmp-xds import``) has to *write* them, and the CI-SIS says where each
one comes from (research-notes/dmp-france.md §5):

==============================  ==============================================================
DocumentEntry                   CDA R2
==============================  ==============================================================
patientId                       ``recordTarget/patientRole/id`` in an INS domain
uniqueId                        ``id`` (``root`` or ``root^extension``)
typeCode / classCode            ``code``; classCode from typeCode (DMP correspondence table)
title                           ``title``
creationTime                    ``effectiveTime``, converted to UTC
confidentialityCode             ``confidentialityCode``
languageCode                    ``languageCode``
author*                         each ``author``: ``assignedAuthor/id`` and ``assignedPerson``
                                (authorPerson), ``representedOrganization`` (authorInstitution),
                                ``assignedAuthor/code`` (authorSpecialty), ``functionCode``
                                (authorRole)
legalAuthenticator              ``legalAuthenticator/assignedEntity``
serviceStart/StopTime           ``documentationOf/serviceEvent/effectiveTime/low|high``
eventCodeList                   ``documentationOf/serviceEvent/code``
healthcareFacilityTypeCode      ``componentOf/encompassingEncounter/location/healthCareFacility/
                                code``
practiceSettingCode             ``documentationOf/serviceEvent/performer/assignedEntity/
                                representedOrganization/standardIndustryClassCode``
formatCode                      ``nonXMLBody/text/@mediaType`` (XDS-SD), else the volet's
                                ``templateId``
sourcePatientId / Info          ``recordTarget/patientRole`` (id, name, birth time, gender)
==============================  ==============================================================

Why a reader of its own rather than :func:`.header.read_header`: that one keeps the few
attributes the server compares, while a producer also needs texts (title, names) and fields
deeper in the header. It follows the same rules: one expat pass with bounded memory (texts are
collected only inside the few elements we want, and capped), any document type declaration
refused (so no entity, no XML bomb), and the whole document read, so that a malformed one is
refused here rather than by the server.

A field the document does not give (or gives in a form we cannot map) is left empty, with a note
saying why; the producer fills it from elsewhere (a sidecar file) or reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..metadata.model import Author, Code
from .consistency import IHE_FORMAT_SCHEME, UNSTRUCTURED_FORMATS
from .header import HeaderWalker, InstanceId, instance_id
from .times import ts_to_utc

MAX_TEXT = 512
"""Characters kept of one text (a title, a name): a hostile document cannot grow them."""
MAX_REPEATS = 16
"""Authors, ids and event codes kept from one header (real ones have a handful)."""

IDNPS = "1.2.250.1.71.4.2.1"  # national identifiers of health professionals
IDNST = "1.2.250.1.71.4.2.2"  # national identifiers of structures
INS_PREFIX = "1.2.250.1.213.1.4."  # INS-NIR, INS-NIA and their test domains
CLASS_SCHEME = "1.2.250.1.213.1.1.4.1"  # TRE_A03 ClasseDocument
LOINC = "2.16.840.1.113883.6.1"
TYPE_DOC_COMPLEMENTAIRE = "1.2.250.1.213.1.1.4.12"  # TRE_A05
CI_SIS_FORMAT_SCHEME = "1.2.250.1.213.1.1.4.2.282"  # TRE_A06
HL7_CONFIDENTIALITY = "2.16.840.1.113883.5.25"

CLASS_NAMES = {
    "10": "Compte rendu",
    "11": "Synthèse",
    "31": "Imagerie médicale",
    "42": "Prescription",
    "43": "Dispensation",
    "44": "Plan de soins, protocole de soins",
    "45": "Traitement administré",
    "52": "Certificat, déclaration",
    "60": "Données de remboursement",
    "90": "Autres documents déposés par le patient",
    "95": "Document de gestion",
}
"""The DMP's document classes (JDV_J57), code -> display name."""

_LOINC_CLASSES = {
    "10": "11488-4 11490-0 11502-2 11505-5 11506-3 11526-1 15507-7 15508-5 28653-4 29274-8 "
    "34112-3 34749-2 34794-8 34874-8 34875-5 47420-5 51969-4 59283-2 60568-3 67851-6 70004-7 "
    "75482-0 75492-9 75496-0 77436-4 78513-9 78601-2 83981-1 85208-7 93024-8 96349-6",
    "11": "18761-7 34133-9 34842-5 56445-0 57055-6 57057-2 57075-4 60591-5 68599-0 68817-6 "
    "74207-2 78489-2 80820-4 83836-7 83901-9 88348-8 89235-6",
    "31": "18748-4 52040-3",
    "42": "55115-0 57828-6 57832-8 57833-6 61357-0 75468-9",
    "43": "60593-1",
    "44": "18776-5 77604-7 80771-9 80788-3 83869-8",
    "45": "80565-5",
    "52": "11369-6 87273-9 89601-9 96173-0 96874-3",
    "90": "74465-6",
    "95": "59284-0 86531-1",
}
_COMPLEMENTARY_CLASSES = {
    "10": "BIL_AUTO DOCPAT03 DOCPAT05 DOCPAT06",
    "11": "DOCPAT01 DOCPAT08 SYNTH",
    "31": "DOCPAT04 IMG-KOS",
    "42": "DOCPAT02 PRESC-AAT PRESC-BIO PRESC-KINE PRESC-INF PRESC-PEDI PRESC-ORTHOPHO "
    "PRESC-ORTHOPTIE",
    "43": "DISP_AUT",
    "44": "PROT_ALD",
    "52": "CERT_DECL DOCPAT07",
    "60": "REMB",
    "90": "EXPPAT_1 EXPPAT_2 EXPPAT_3",
    "95": "AUTORIS-SOINS ATTEST-RESID ATTEST-DROITS-AM ATTEST-ASS-COMPL ATTEST-HEBGT DOCPAT09",
}
TYPE_TO_CLASS: dict[tuple[str, str], str] = {
    **{(t, LOINC): c for c, types in _LOINC_CLASSES.items() for t in types.split()},
    **{
        (t, TYPE_DOC_COMPLEMENTAIRE): c
        for c, types in _COMPLEMENTARY_CLASSES.items()
        for t in types.split()
    },
}
"""classCode of each DMP typeCode (the DMP's typeCode -> classCode correspondence, ASS_X16)."""

TEMPLATE_FORMATS: dict[str, Code] = {
    "1.3.6.1.4.1.19376.1.3.3": Code(
        "urn:ihe:lab:xd-lab:2008", IHE_FORMAT_SCHEME, "CR structuré d'examens de biologie médicale"
    ),
    "1.3.6.1.4.1.19376.1.9.1.1.3": Code(
        "urn:ihe:pharm:dis:2010", IHE_FORMAT_SCHEME, "Dispensation médicamenteuse"
    ),
    "1.2.250.1.213.1.1.1.29": Code(
        "urn:asip:ci-sis:ldl-ses:2017",
        CI_SIS_FORMAT_SCHEME,
        "Lettre de Liaison à la sortie de l'établissement de santé",
    ),
    "1.2.250.1.213.1.1.1.17": Code(
        "urn:asip:ci-sis:sunv:2013", CI_SIS_FORMAT_SCHEME, "Fiche de sortie d'UNV"
    ),
    "1.2.250.1.213.1.1.1.23": Code(
        "urn:asip:ci-sis:fludt:2017",
        CI_SIS_FORMAT_SCHEME,
        "FLU - Transfert de l'EHPAD vers les urgences",
    ),
    "1.2.250.1.213.1.1.1.13": Code(
        "urn:asip:ci-sis:vsm:2012", CI_SIS_FORMAT_SCHEME, "Synthèse médicale"
    ),
    "1.2.250.1.213.1.1.1.36": Code(
        "urn:asip:ci-sis:hr:2019", CI_SIS_FORMAT_SCHEME, "Données de remboursement"
    ),
    "1.2.250.1.213.1.1.1.37": Code(
        "urn:asip:ci-sis:vac:2019", CI_SIS_FORMAT_SCHEME, "Historique des vaccinations"
    ),
    "1.2.250.1.213.1.1.1.46": Code(
        "urn:asip:ci-sis:vac-note:2021", CI_SIS_FORMAT_SCHEME, "Note de vaccination"
    ),
    "1.2.250.1.213.1.1.1.59": Code(
        "urn:ans:ci-sis:trod:2024", CI_SIS_FORMAT_SCHEME, "Test rapide d'orientation diagnostique"
    ),
}
"""formatCode of the structured volets we know by their templateId. A document of another
volet gets its formatCode from its sidecar file."""

GENERIC_TEMPLATES = frozenset({"2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1"})
"""templateIds every French CDA carries (CDA R2 in France, CI-SIS): they name no volet."""
OUTSIDE_VOLETS = Code(
    "urn:asipSante:modelesHorsProfils:2011",
    CI_SIS_FORMAT_SCHEME,
    "Document non référencé IHE ou CI-SIS",
)
_SD_NAMES = {
    "urn:ihe:iti:xds-sd:pdf:2008": "Document à corps non structuré en Pdf/A-1",
    "urn:ihe:iti:xds-sd:text:2008": "Document à corps non structuré en texte brut",
    "urn:ihe:iti-fr:xds-sd:jpeg:2010": "Corps non structuré jpeg",
    "urn:ihe:iti-fr:xds-sd:tiff:2010": "Corps non structuré tiff",
    "urn:ihe:iti-fr:xds-sd:rtf:2010": "Corps non structuré rtf",
}
_CONFIDENTIALITY_NAMES = {"N": "Normal", "R": "Restreint", "V": "Très restreint"}

_TEXTS = frozenset(
    {
        ("title",),
        ("recordTarget", "patientRole", "patient", "name", "family"),
        ("recordTarget", "patientRole", "patient", "name", "given"),
        ("author", "assignedAuthor", "assignedPerson", "name", "family"),
        ("author", "assignedAuthor", "assignedPerson", "name", "given"),
        ("author", "assignedAuthor", "representedOrganization", "name"),
        ("legalAuthenticator", "assignedEntity", "assignedPerson", "name", "family"),
        ("legalAuthenticator", "assignedEntity", "assignedPerson", "name", "given"),
    }
)
"""The elements whose text is kept; every other text flows through expat unseen."""
_MAX_DEPTH = 7  # ClinicalDocument + the deepest path we read (practiceSettingCode: 6 more)


class NotCda(Exception):
    """Well-formed XML whose root is not an HL7 CDA R2 ``ClinicalDocument``."""


@dataclass(slots=True)
class _Person:
    """A person as the header gives it: an id and a name."""

    ids: list[InstanceId] = field(default_factory=list)
    family: str | None = None
    given: str | None = None


@dataclass(slots=True)
class _Author:
    person: _Person = field(default_factory=_Person)
    specialty: Code | None = None
    role: Code | None = None
    organisation_ids: list[InstanceId] = field(default_factory=list)
    organisation_name: str | None = None


@dataclass(slots=True)
class CdaFacts:
    """What one pass over a CDA document collected (raw, as the header says it)."""

    id: InstanceId | None = None
    code: Code | None = None
    title: str | None = None
    effective_time: str | None = None
    confidentiality: Code | None = None
    language: str | None = None
    template_ids: list[str] = field(default_factory=list)
    patient: _Person = field(default_factory=_Person)
    birth_time: str | None = None
    gender: str | None = None
    authors: list[_Author] = field(default_factory=list)
    legal_authenticator: _Person | None = None
    service_start: str | None = None
    service_stop: str | None = None
    event_codes: list[Code] = field(default_factory=list)
    facility: Code | None = None
    practice: Code | None = None
    body: str | None = None
    body_media_type: str | None = None


@dataclass
class EntryMetadata:
    """The DocumentEntry of one document as a producer writes it (XDS values, not ebRIM).

    ``notes`` says, per XDS attribute name, why a field could not be derived; it is what the
    producer reports when nothing else fills the field either.
    """

    patient_id: str | None = None
    unique_id: str | None = None
    mime_type: str | None = None
    title: str | None = None
    comments: str | None = None
    class_code: Code | None = None
    type_code: Code | None = None
    format_code: Code | None = None
    facility_code: Code | None = None
    practice_code: Code | None = None
    confidentiality_codes: list[Code] = field(default_factory=list)
    event_codes: list[Code] = field(default_factory=list)
    creation_time: str | None = None
    service_start_time: str | None = None
    service_stop_time: str | None = None
    language_code: str | None = None
    legal_authenticator: str | None = None
    source_patient_id: str | None = None
    source_patient_info: list[str] = field(default_factory=list)
    authors: list[Author] = field(default_factory=list)
    reference_ids: list[str] = field(default_factory=list)
    hash: str | None = None
    size: int | None = None
    notes: dict[str, str] = field(default_factory=dict)


def _code(attrs: dict[str, str]) -> Code | None:
    code, system = attrs.get("code"), attrs.get("codeSystem")
    if not code or not system:
        return None
    return Code(code, system, attrs.get("displayName") or None)


class _Collector(HeaderWalker):
    """Attributes down to the deepest path we read, and a few texts (title, names)."""

    max_depth = _MAX_DEPTH
    texts = _TEXTS
    max_text = MAX_TEXT

    def __init__(self) -> None:
        super().__init__()
        self.facts = CdaFacts()

    def pick(self, path: tuple[str, ...], attrs: dict[str, str]) -> None:
        f = self.facts
        match path:
            case ("id",) if f.id is None:
                f.id = instance_id(attrs)
            case ("code",) if f.code is None:
                f.code = _code(attrs)
            case ("effectiveTime",) if f.effective_time is None:
                f.effective_time = attrs.get("value")
            case ("confidentialityCode",) if f.confidentiality is None:
                f.confidentiality = _code(attrs)
            case ("languageCode",) if f.language is None:
                f.language = attrs.get("code")
            case ("templateId",) if len(f.template_ids) < MAX_REPEATS and attrs.get("root"):
                f.template_ids.append(attrs["root"])
            case ("recordTarget", "patientRole", "id") if len(f.patient.ids) < MAX_REPEATS:
                if ii := instance_id(attrs):
                    f.patient.ids.append(ii)
            case ("recordTarget", "patientRole", "patient", "administrativeGenderCode"):
                f.gender = f.gender or attrs.get("code")
            case ("recordTarget", "patientRole", "patient", "birthTime"):
                f.birth_time = f.birth_time or attrs.get("value")
            case ("author",) if len(f.authors) < MAX_REPEATS:
                f.authors.append(_Author())
            case ("author", "functionCode") if f.authors:
                f.authors[-1].role = f.authors[-1].role or _code(attrs)
            case ("author", "assignedAuthor", "id") if f.authors:
                if (ii := instance_id(attrs)) and len(f.authors[-1].person.ids) < MAX_REPEATS:
                    f.authors[-1].person.ids.append(ii)
            case ("author", "assignedAuthor", "code") if f.authors:
                f.authors[-1].specialty = f.authors[-1].specialty or _code(attrs)
            case ("author", "assignedAuthor", "representedOrganization", "id") if f.authors:
                if (ii := instance_id(attrs)) and len(f.authors[-1].organisation_ids) < MAX_REPEATS:
                    f.authors[-1].organisation_ids.append(ii)
            case ("legalAuthenticator",) if f.legal_authenticator is None:
                f.legal_authenticator = _Person()
            case ("legalAuthenticator", "assignedEntity", "id") if f.legal_authenticator:
                if (ii := instance_id(attrs)) and len(f.legal_authenticator.ids) < MAX_REPEATS:
                    f.legal_authenticator.ids.append(ii)
            case ("documentationOf", "serviceEvent", "code") if len(f.event_codes) < MAX_REPEATS:
                if code := _code(attrs):
                    f.event_codes.append(code)
            case ("documentationOf", "serviceEvent", "effectiveTime", "low"):
                f.service_start = f.service_start or attrs.get("value")
            case ("documentationOf", "serviceEvent", "effectiveTime", "high"):
                f.service_stop = f.service_stop or attrs.get("value")
            case (
                "documentationOf",
                "serviceEvent",
                "performer",
                "assignedEntity",
                "representedOrganization",
                "standardIndustryClassCode",
            ) if f.practice is None:
                f.practice = _code(attrs)
            case (
                "componentOf",
                "encompassingEncounter",
                "location",
                "healthCareFacility",
                "code",
            ) if f.facility is None:
                f.facility = _code(attrs)
            case ("component", ("structuredBody" | "nonXMLBody") as body) if f.body is None:
                f.body = body
            case ("component", "nonXMLBody", "text") if f.body_media_type is None:
                f.body_media_type = attrs.get("mediaType") or "text/plain"

    def keep_text(self, path: tuple[str, ...], text: str | None) -> None:
        f = self.facts
        person: _Person | None = None
        if path[0] == "title":
            f.title = f.title or text
            return
        if path[0] == "recordTarget":
            person = f.patient
        elif path[0] == "author" and f.authors:
            if path[2] == "representedOrganization":
                f.authors[-1].organisation_name = f.authors[-1].organisation_name or text
                return
            person = f.authors[-1].person
        elif path[0] == "legalAuthenticator":
            person = f.legal_authenticator
        if person is None:
            return
        if path[-1] == "family":
            person.family = person.family or text
        else:
            person.given = person.given or text


def read_cda(source: Path | BinaryIO) -> CdaFacts:
    """One pass over the document at ``source`` (a path or a binary stream).

    Raises :class:`.header.NotWellFormed` (syntax error, document type declaration) with expat's
    position, never content, and :class:`NotCda` for other well-formed XML.
    """
    collector = _Collector()
    if isinstance(source, Path):
        with open(source, "rb") as stream:
            is_cda = collector.walk(stream)
    else:
        is_cda = collector.walk(source)
    if not is_cda:
        raise NotCda("the root element is not an HL7 CDA R2 ClinicalDocument")
    return collector.facts


# --- the derivation --------------------------------------------------------------------------


def _v2(text: str | None) -> str:
    """An HL7 v2 component: the separators a name may contain, escaped."""
    if not text:
        return ""
    for raw, escaped in (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\")):
        text = text.replace(raw, escaped)
    return text.replace("~", "\\R\\")


def _is_oid(value: str) -> bool:
    parts = value.split(".")
    return len(parts) > 1 and all(p.isdigit() for p in parts)


def xcn(person: _Person) -> str | None:
    """The XCN of a person with an identifier (the DMP's shape: IdNat PS or INS), or None."""
    ii = next((i for i in person.ids if i.extension), None)
    if ii is None or ii.extension is None:
        return None
    name = f"{_v2(ii.extension)}^{_v2(person.family)}^{_v2(person.given)}"
    if not _is_oid(ii.root):
        return name
    kind = "NH" if ii.root.startswith(INS_PREFIX) else "IDNPS"
    return f"{name}^^^^^^&{ii.root}&ISO^D^^^{kind}"


def xon(name: str | None, ids: list[InstanceId]) -> str | None:
    """The XON of an organisation: its name and, when it has one, its national id."""
    if not name:
        return None
    ii = next((i for i in ids if i.extension and _is_oid(i.root)), None)
    if ii is None:
        return _v2(name)
    return f"{_v2(name)}^^^^^&{ii.root}&ISO^IDNST^^^{_v2(ii.extension)}"


def _ce(code: Code) -> str:
    """A coded slot value (authorSpecialty, authorRole): ``code^display^system``."""
    return f"{_v2(code.code)}^{_v2(code.display)}^{code.scheme}"


def _author(author: _Author) -> Author | None:
    person = xcn(author.person)
    institution = xon(author.organisation_name, author.organisation_ids)
    if person is None and institution is None:
        return None
    return Author(
        person=person,
        institutions=[institution] if institution else [],
        roles=[_ce(author.role)] if author.role else [],
        specialties=[_ce(author.specialty)] if author.specialty else [],
    )


def _patient_id(ids: list[InstanceId]) -> tuple[str | None, str | None]:
    """(CX patientId, note): the INS of the record target, or its only identifier."""
    ins = [i for i in ids if i.extension and i.root.startswith(INS_PREFIX)]
    candidates = ins or [i for i in ids if i.extension and _is_oid(i.root)]
    if len(candidates) == 1:
        ii = candidates[0]
        return f"{ii.extension}^^^&{ii.root}&ISO", None
    if not candidates:
        return None, "the CDA recordTarget/patientRole has no identifier (root OID + extension)"
    return None, "the CDA recordTarget/patientRole has several identifiers and none is an INS"


def _format_code(facts: CdaFacts) -> tuple[Code | None, str | None]:
    if facts.body == "nonXMLBody":
        media = (facts.body_media_type or "text/plain").lower()
        code = UNSTRUCTURED_FORMATS.get(media)
        if code is None:
            return None, f"no XDS-SD formatCode for a nonXMLBody of media type {media}"
        return Code(code, IHE_FORMAT_SCHEME, _SD_NAMES.get(code, media)), None
    for template in facts.template_ids:
        if template in TEMPLATE_FORMATS:
            return TEMPLATE_FORMATS[template], None
    if facts.template_ids and set(facts.template_ids) <= GENERIC_TEMPLATES:
        return OUTSIDE_VOLETS, None
    return None, "no formatCode is known for this document's templateIds"


def _utc(value: str | None, what: str, notes: dict[str, str]) -> str | None:
    if not value:
        return None
    try:
        return ts_to_utc(value)
    except ValueError as exc:
        notes[what] = f"the CDA {what} is unusable: {exc}"
        return None


def _source_patient_info(facts: CdaFacts) -> list[str]:
    info = []
    if facts.patient.family or facts.patient.given:
        info.append(f"PID-5|{_v2(facts.patient.family)}^{_v2(facts.patient.given)}^^^^^L")
    if facts.birth_time:
        info.append(f"PID-7|{_v2(facts.birth_time[:8])}")
    if facts.gender:
        info.append(f"PID-8|{_v2(facts.gender)}")
    return info


def derive_class_code(entry: EntryMetadata) -> None:
    """Set ``entry``'s classCode from its typeCode (the DMP's correspondence table), or note
    why it cannot be."""
    type_code = entry.type_code
    if type_code is None:
        return
    class_code = TYPE_TO_CLASS.get((type_code.code, type_code.scheme))
    if class_code is None:
        entry.class_code = None
        entry.notes["classCode"] = (
            f"no DMP classCode is known for typeCode {type_code.code} ({type_code.scheme})"
        )
    else:
        entry.class_code = Code(class_code, CLASS_SCHEME, CLASS_NAMES[class_code])
        entry.notes.pop("classCode", None)


def derive(facts: CdaFacts) -> EntryMetadata:
    """The DocumentEntry metadata a CDA header gives (see the table in the module docstring)."""
    notes: dict[str, str] = {}
    entry = EntryMetadata(mime_type="text/xml", notes=notes)
    entry.patient_id, note = _patient_id(facts.patient.ids)
    if note:
        notes["patientId"] = note
    entry.source_patient_id = entry.patient_id
    entry.source_patient_info = _source_patient_info(facts)
    if facts.id is not None:
        entry.unique_id = facts.id.as_unique_id
    else:
        notes["uniqueId"] = "the CDA header has no ClinicalDocument/id with a root"
    entry.type_code = facts.code
    if facts.code is None:
        notes["typeCode"] = "the CDA header has no ClinicalDocument/code with a codeSystem"
    else:
        derive_class_code(entry)
    entry.title = facts.title
    entry.creation_time = _utc(facts.effective_time, "creationTime", notes)
    if facts.confidentiality is not None:
        c = facts.confidentiality
        display = c.display
        if display is None and c.scheme == HL7_CONFIDENTIALITY:
            display = _CONFIDENTIALITY_NAMES.get(c.code)
        entry.confidentiality_codes = [Code(c.code, c.scheme, display or c.code)]
    entry.language_code = facts.language
    entry.authors = [a for a in map(_author, facts.authors) if a is not None]
    if facts.legal_authenticator is not None:
        entry.legal_authenticator = xcn(facts.legal_authenticator)
    entry.service_start_time = _utc(facts.service_start, "serviceStartTime", notes)
    entry.service_stop_time = _utc(facts.service_stop, "serviceStopTime", notes)
    entry.event_codes = list(facts.event_codes)
    entry.facility_code = facts.facility
    if facts.facility is None:
        notes["healthcareFacilityTypeCode"] = (
            "the CDA has no componentOf/encompassingEncounter/location/healthCareFacility/code"
        )
    entry.practice_code = facts.practice
    if facts.practice is None:
        notes["practiceSettingCode"] = (
            "the CDA has no documentationOf/serviceEvent/performer/assignedEntity/"
            "representedOrganization/standardIndustryClassCode"
        )
    entry.format_code, note = _format_code(facts)
    if note:
        notes["formatCode"] = note
    return entry


def metadata_of(source: Path | BinaryIO) -> EntryMetadata:
    """Read a CDA document and derive its DocumentEntry metadata (hash and size excluded: the
    caller knows the bytes). Raises :class:`.header.NotWellFormed` or :class:`NotCda`."""
    return derive(read_cda(source))
