"""Reading a VIHF: the SAML 2.0 assertion's attributes -> the facts of a :class:`Principal`.

The attribute names are the French specification's, as the ANS samples spell them
(``Identifiant_Structure``, ``Secteur_Activite``, ``LPS_ID_HOMOLOGATION_DMP``, the XACML/XSPA
URNs for role, patient and purpose of use). One exception: the authentication mode appears as
``Authentification_mode`` in the samples, ``Authentification_Mode`` in the 2024 IG and some
clients, and ``Authentication_mode`` in English-speaking code, so that one name is matched
case-insensitively in both spellings.

The motive of an emergency access (break-glass, centre 15) is optional here: no DMP sample
carries one and most software sends none (an operator may require it: DMP_XDS_MOTIVE_REQUIRED,
checked by :mod:`.authenticate`). When given it is read from a string attribute
``Mode_Acces_Raison`` (the name ProSanteConnect uses; matched case-insensitively) or, failing
that, from the ``hl7:originalText`` of the PurposeOfUse value (HL7's place for the words behind
a code). The PurposeOfUse's ``displayName`` is not a motive: it is the code's label ("Accès en
bris de glace"), which every LPS copies. Whitespace runs (line breaks included) become one
space; the usual length and control-character limits apply.

This module only reads and checks the *form* of what the assertion says; it trusts nothing.
Whether the assertion is authentic (signature, certificate, time, replay) is
:mod:`.authenticate`'s business, which calls this on exactly the element it verified.
Every problem is a ``wsse:InvalidSecurity`` fault naming the attribute. An attribute given twice
is refused rather than resolved, so that no reader can pick a different value from ours.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from lxml import etree

from ..metadata.datatypes import is_oid, parse_patient_id
from ..namespaces import HL7V3, SAML2
from .faults import invalid
from .principal import (
    ACCESS_MODE_SYSTEM,
    PROFESSION_SYSTEM,
    PROFESSIONS_WITH_SPECIALTY,
    AccessMode,
    AuthenticationMode,
    CodedValue,
    Principal,
    Software,
)

# --- attribute names (the client's VIHF builder uses the same constants) ----------------------
VIHF_VERSION = "VIHF_Version"
AUTHENTICATION_MODE = "Authentification_mode"
AUTHENTICATION_MODE_NAMES = frozenset({"authentification_mode", "authentication_mode"})
ACCESS_MOTIVE = "Mode_Acces_Raison"
STRUCTURE_ID = "Identifiant_Structure"
ACTIVITY_SECTOR = "Secteur_Activite"
SUBJECT_ID = "urn:oasis:names:tc:xspa:1.0:subject:subject-id"
ROLE = "urn:oasis:names:tc:xacml:2.0:subject:role"
RESOURCE_ID = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"
RESOURCE_URN = "Ressource_URN"
PURPOSE_OF_USE = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
CONFIDENTIALITY_CODE = "urn:oasis:names:tc:xspa:1.0:resource:patient:hl7:confidentiality-code"
LPS_ID = "LPS_ID"
LPS_NAME = "LPS_Nom"
LPS_VERSION = "LPS_Version"
LPS_HOMOLOGATION = "LPS_ID_HOMOLOGATION_DMP"

RESOURCE_URN_VALUE = "urn:dmp"
# 3.0 in every official sample and client; the 2024 IG's table says 4.0.
SUPPORTED_VIHF_VERSIONS = frozenset({"3.0", "4.0"})

_S = f"{{{SAML2}}}"
_MAX_VALUE = 512
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_instant(text: str | None, what: str) -> dt.datetime:
    """An xs:dateTime with an explicit time zone (SAML requires UTC) -> aware datetime."""
    value = (text or "").strip()
    match = _INSTANT.match(value)
    if not match:
        raise invalid("time", f"{what} {value!r} is not a date-time with a time zone")
    fraction = match.group(1) or ""
    if len(fraction) > 7:  # Python reads at most microseconds; .NET writes 7 digits
        value = value.replace(fraction, fraction[:7], 1)
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid("time", f"{what} {value!r} is not a valid date-time") from None


@dataclass(frozen=True)
class Vihf:
    """What an assertion says, before anything about it is trusted."""

    assertion_id: str
    issue_instant: dt.datetime
    not_before: dt.datetime | None
    not_on_or_after: dt.datetime | None
    issuer: str
    principal: Principal  # ``expires`` is the issue instant until authentication sets it


def read_vihf(assertion: etree._Element) -> Vihf:
    """Read ``assertion`` (a saml2:Assertion element) or raise ``wsse:InvalidSecurity``."""
    if assertion.get("Version") != "2.0":
        raise invalid("assertion", "the assertion's Version must be 2.0")
    assertion_id = assertion.get("ID") or ""
    issue_instant = parse_instant(assertion.get("IssueInstant"), "IssueInstant")
    issuer = _single_text(assertion, _S + "Issuer", "Issuer")
    subject = _single_child(assertion, _S + "Subject", "Subject")
    name_id = _single_text(subject, _S + "NameID", "Subject/NameID")
    not_before, not_on_or_after = _conditions(assertion)
    attrs = _attributes(assertion)

    mode_text = _string(attrs, AUTHENTICATION_MODE).upper()
    try:
        mode = AuthenticationMode(mode_text)
    except ValueError:
        raise invalid("attributes", f"unknown {AUTHENTICATION_MODE} {mode_text!r}") from None
    version = _string(attrs, VIHF_VERSION)
    if version not in SUPPORTED_VIHF_VERSIONS:
        raise invalid("attributes", f"unsupported {VIHF_VERSION} {version!r}")
    if _string(attrs, RESOURCE_URN) != RESOURCE_URN_VALUE:
        raise invalid("attributes", f"{RESOURCE_URN} must be {RESOURCE_URN_VALUE!r}")
    patient_text = _string(attrs, RESOURCE_ID)
    try:
        patient = parse_patient_id(patient_text)
    except ValueError:
        # The message of parse_patient_id quotes the value: keep identifiers out of faults.
        raise invalid(
            "attributes", f"{RESOURCE_ID} is not a patient id 'matricule^^^&OID&ISO^NH'"
        ) from None
    roles = _coded_values(attrs, ROLE, "Role", required=True)
    profession = roles[0]
    if (
        profession.system == PROFESSION_SYSTEM
        and profession.code in PROFESSIONS_WITH_SPECIALTY
        and len(roles) < 2
    ):
        raise invalid(
            "attributes", f"{ROLE}: profession {profession.code} requires a specialty value"
        )
    principal = Principal(
        assertion_id=assertion_id,
        name_id=name_id,
        subject_name=(
            _optional(attrs, SUBJECT_ID)
            if mode is AuthenticationMode.DIRECTE
            else _string(attrs, SUBJECT_ID)
        ),
        roles=tuple(roles),
        structure_id=_string(attrs, STRUCTURE_ID),
        activity_sector=_sector(_string(attrs, ACTIVITY_SECTOR)),
        authentication_mode=mode,
        access_mode=_access_mode(attrs),
        patient=patient,
        software=Software(
            name=_string(attrs, LPS_NAME),
            version=_string(attrs, LPS_VERSION),
            homologation=_string(attrs, LPS_HOMOLOGATION),
            installation_id=_optional(attrs, LPS_ID),
        ),
        vihf_version=version,
        issue_instant=issue_instant,
        expires=issue_instant,
        confidentiality_codes=tuple(
            _coded_values(attrs, CONFIDENTIALITY_CODE, "ConfidentialityCode", required=False)
        ),
        access_motive=_access_motive(attrs),
    )
    return Vihf(assertion_id, issue_instant, not_before, not_on_or_after, issuer, principal)


# --- helpers ----------------------------------------------------------------------------------


def _elements(parent: etree._Element, tag: str) -> list[etree._Element]:
    return [c for c in parent if c.tag == tag]


def _single_child(parent: etree._Element, tag: str, what: str) -> etree._Element:
    found = _elements(parent, tag)
    if len(found) != 1:
        raise invalid("assertion", f"the assertion must have exactly one {what}")
    return found[0]


def _clean(text: str | None, what: str) -> str:
    value = (text or "").strip()
    if not value:
        raise invalid("attributes", f"{what} is empty")
    if len(value) > _MAX_VALUE or _CONTROL.search(value):
        raise invalid("attributes", f"{what} is too long or contains control characters")
    return value


def _single_text(parent: etree._Element, tag: str, what: str) -> str:
    element = _single_child(parent, tag, what)
    if any(isinstance(c.tag, str) for c in element):
        raise invalid("assertion", f"{what} must hold text only")
    return _clean(element.text, what)


def _conditions(assertion: etree._Element) -> tuple[dt.datetime | None, dt.datetime | None]:
    found = _elements(assertion, _S + "Conditions")
    if not found:
        return None, None
    if len(found) > 1:
        raise invalid("assertion", "the assertion has more than one Conditions element")
    conditions = found[0]
    low = conditions.get("NotBefore")
    high = conditions.get("NotOnOrAfter")
    return (
        parse_instant(low, "Conditions/@NotBefore") if low is not None else None,
        parse_instant(high, "Conditions/@NotOnOrAfter") if high is not None else None,
    )


def _attributes(assertion: etree._Element) -> dict[str, list[etree._Element]]:
    """Attribute name -> its AttributeValue elements; the mode's name is normalised."""
    found: dict[str, list[etree._Element]] = {}
    for statement in _elements(assertion, _S + "AttributeStatement"):
        for attribute in statement:
            if attribute.tag != _S + "Attribute":
                continue
            attr_name = (attribute.get("Name") or "").strip()
            if attr_name.lower() in AUTHENTICATION_MODE_NAMES:
                attr_name = AUTHENTICATION_MODE
            elif attr_name.lower() == ACCESS_MOTIVE.lower():
                attr_name = ACCESS_MOTIVE
            if attr_name in found:
                raise invalid("attributes", f"attribute {attr_name} appears more than once")
            found[attr_name] = _elements(attribute, _S + "AttributeValue")
    return found


def _values(
    attrs: dict[str, list[etree._Element]], attr_name: str, required: bool
) -> list[etree._Element] | None:
    values = attrs.get(attr_name)
    if values is None or not values:
        if required:
            raise invalid("attributes", f"required attribute {attr_name} is missing")
        return None
    return values


def _string(attrs: dict[str, list[etree._Element]], attr_name: str) -> str:
    """A required single-valued text attribute."""
    return _optional(attrs, attr_name, required=True) or ""


def _optional(
    attrs: dict[str, list[etree._Element]], attr_name: str, required: bool = False
) -> str | None:
    values = _values(attrs, attr_name, required)
    if values is None:
        return None
    if len(values) != 1:
        raise invalid("attributes", f"attribute {attr_name} must have exactly one value")
    value = values[0]
    if any(isinstance(c.tag, str) for c in value):
        raise invalid("attributes", f"attribute {attr_name} must hold text")
    return _clean(value.text, f"attribute {attr_name}")


def _coded_values(
    attrs: dict[str, list[etree._Element]], attr_name: str, local: str, *, required: bool
) -> list[CodedValue]:
    values = _values(attrs, attr_name, required) or []
    result = []
    for value in values:
        children = [c for c in value if isinstance(c.tag, str)]
        if len(children) != 1 or children[0].tag != f"{{{HL7V3}}}{local}":
            raise invalid(
                "attributes", f"each value of {attr_name} must be one hl7:{local} element"
            )
        code = (children[0].get("code") or "").strip()
        system = (children[0].get("codeSystem") or "").strip()
        if not code or not is_oid(system):
            raise invalid("attributes", f"{attr_name}: {local} needs a code and an OID codeSystem")
        result.append(CodedValue(code, system, children[0].get("displayName")))
    return result


def _sector(text: str) -> CodedValue:
    code, sep, system = text.partition("^")
    if not code or not sep or not is_oid(system):
        raise invalid("attributes", f"{ACTIVITY_SECTOR} must be 'code^OID', got {text!r}")
    return CodedValue(code, system)


def _access_mode(attrs: dict[str, list[etree._Element]]) -> AccessMode:
    purposes = _coded_values(attrs, PURPOSE_OF_USE, "PurposeOfUse", required=True)
    if len(purposes) != 1:
        raise invalid("attributes", f"attribute {PURPOSE_OF_USE} must have exactly one value")
    purpose = purposes[0]
    if purpose.system != ACCESS_MODE_SYSTEM:
        raise invalid(
            "access_mode", f"purpose of use must be coded in {ACCESS_MODE_SYSTEM} (ModeAcces)"
        )
    try:
        return AccessMode(purpose.code.lower())  # the code system is case-insensitive
    except ValueError:
        raise invalid("access_mode", f"unknown access mode {purpose.code!r}") from None


def _access_motive(attrs: dict[str, list[etree._Element]]) -> str | None:
    """The optional motive of the access (module docstring): the attribute, else the
    PurposeOfUse's originalText, else None."""
    values = attrs.get(ACCESS_MOTIVE)
    if values:
        if len(values) != 1 or any(isinstance(c.tag, str) for c in values[0]):
            raise invalid("attributes", f"attribute {ACCESS_MOTIVE} must hold one text value")
        text = " ".join((values[0].text or "").split())
        return _clean(text, f"attribute {ACCESS_MOTIVE}") if text else None
    for value in attrs.get(PURPOSE_OF_USE) or ():
        for original in value.iterfind(f"{{{HL7V3}}}PurposeOfUse/{{{HL7V3}}}originalText"):
            if any(isinstance(c.tag, str) for c in original):
                raise invalid("attributes", "PurposeOfUse/originalText must hold text only")
            text = " ".join((original.text or "").split())
            if text:
                return _clean(text, "PurposeOfUse/originalText")
    return None
