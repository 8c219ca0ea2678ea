"""Building and signing a VIHF on the client side (tests, CLI, benchmarks).

A VIHF is a SAML 2.0 assertion in a ``wsse:Security`` header, in the shape of the ANS samples:
``Issuer`` (the signer's DN), the enveloped ``ds:Signature`` right after it, ``Subject/NameID``,
an ``AuthnStatement`` and one ``AttributeStatement`` with the French attribute names. Signing
uses xmlsec: exclusive c14n, RSA-SHA256 by default (RSA-SHA1 on request, as the older official
samples do), the signer's certificate in ``KeyInfo/X509Data``.

:class:`VihfHeaders` is an ``XdsClient`` ``header_factory``: each call builds and signs a new
assertion (new ID, current IssueInstant), because the server refuses an assertion it has seen.

The builder deliberately allows wrong VIHFs (missing attributes, odd values, another attribute
spelling, no signature): the security tests build their hostile inputs with it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import xmlsec
from lxml import etree

from ..namespaces import HL7V3, SAML2, WSSE, WSU, XSI
from ..security import vihf as names
from ..security.principal import ACCESS_MODE_SYSTEM

XS = "http://www.w3.org/2001/XMLSchema"
_S = f"{{{SAML2}}}"
SIGNATURE_ALGORITHMS = {
    "rsa-sha256": (xmlsec.Transform.RSA_SHA256, xmlsec.Transform.SHA256),
    "rsa-sha1": (xmlsec.Transform.RSA_SHA1, xmlsec.Transform.SHA1),
    "rsa-sha512": (xmlsec.Transform.RSA_SHA512, xmlsec.Transform.SHA512),
}
_ACCESS_DISPLAY = {
    "normal": "Accès normal",
    "bris_de_glace": "Accès en bris de glace",
    "centre_15": "Accès par un centre de régulation médicale",
}
# What AuthnContextClassRef says for each mode (any string is accepted by the server).
_AUTHN_CONTEXT = {
    "DIRECTE": "urn:oasis:names:tc:SAML:2.0:ac:classes:SmartcardPKI",
    "INDIRECTE": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password",
    "INDIRECTE_RENFORCEE": "urn:oasis:names:tc:SAML:2.0:ac:classes:SmartcardPKI",
}

Code = tuple[str, str, str]  # code, code system, display name


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def instant(value: dt.datetime) -> str:
    """xs:dateTime in UTC with milliseconds, as the samples write it."""
    return (
        value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{value.microsecond // 1000:03d}Z"
    )


@dataclass(frozen=True)
class VihfClaims:
    """What the VIHF says. ``patient_id`` is a CX (``matricule^^^&OID&ISO``); ``^NH`` is
    added as the DMP writes it unless already there."""

    patient_id: str
    name_id: str = "899900000011"
    subject_name: str | None = "MEDECIN CLAIRE"
    roles: tuple[Code, ...] = (
        ("10", "1.2.250.1.71.1.2.7", "Médecin"),
        ("SM26", "1.2.250.1.71.4.2.5", "Qualifié en Médecine Générale (SM)"),
    )
    structure_id: str = "10B0999991"
    activity_sector: str = "SA07^1.2.250.1.71.4.2.4"
    authentication_mode: str = "INDIRECTE"
    mode_attribute: str = names.AUTHENTICATION_MODE  # the other spellings exist in the wild
    access_mode: str = "normal"
    access_mode_system: str = ACCESS_MODE_SYSTEM
    # Why an emergency mode is used (optional free text): sent as the ``Mode_Acces_Raison``
    # attribute, or with ``access_motive_in="original_text"`` as the PurposeOfUse's
    # ``hl7:originalText`` (the server reads either; security/vihf.py).
    access_motive: str | None = None
    access_motive_in: str = "attribute"
    software_name: str = "dmp-xds client"
    software_version: str = "0.1.0"
    homologation: str = "DMP-XDS-TEST-0001"
    installation_id: str | None = "1.2.250.1.999.1.2.1"
    vihf_version: str = "3.0"
    issuer: str = "CN=VIHF SIGN TEST,OU=10B0999991,O=CENTRE DE SANTE DE TEST,C=FR"
    confidentiality_codes: tuple[Code, ...] = ()
    # Conditions: None leaves the element out (as the official samples do).
    lifetime: dt.timedelta | None = dt.timedelta(minutes=5)
    # Attributes to leave out, or to add/override as plain strings (tests of hostile input).
    omit: frozenset[str] = field(default_factory=frozenset)
    extra: Mapping[str, str] = field(default_factory=dict)

    def with_(self, **changes: object) -> VihfClaims:
        return replace(self, **changes)  # type: ignore[arg-type]


def _string_attribute(statement: etree._Element, attr_name: str, value: str) -> None:
    attribute = etree.SubElement(statement, _S + "Attribute", Name=attr_name)
    element = etree.SubElement(attribute, _S + "AttributeValue", nsmap={"xs": XS})
    element.set(f"{{{XSI}}}type", "xs:string")
    element.text = value


def _coded_attribute(
    statement: etree._Element, attr_name: str, local: str, codes: Sequence[Code]
) -> None:
    attribute = etree.SubElement(statement, _S + "Attribute", Name=attr_name)
    for code, system, display in codes:
        value = etree.SubElement(attribute, _S + "AttributeValue")
        coded = etree.SubElement(value, f"{{{HL7V3}}}{local}", nsmap={None: HL7V3})
        coded.set("code", code)
        coded.set("codeSystem", system)
        if display:
            coded.set("displayName", display)
        coded.set(f"{{{XSI}}}type", "CE")


def build_assertion(
    claims: VihfClaims, *, now: dt.datetime | None = None, assertion_id: str | None = None
) -> etree._Element:
    """An unsigned VIHF assertion (sign it with :func:`sign_assertion`)."""
    now = now or utcnow()
    assertion = etree.Element(
        _S + "Assertion",
        nsmap={"saml2": SAML2, "xsi": XSI},
        ID=assertion_id or f"_{uuid.uuid4()}",
        IssueInstant=instant(now),
        Version="2.0",
    )
    issuer = etree.SubElement(
        assertion, _S + "Issuer", Format="urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
    )
    issuer.text = claims.issuer
    subject = etree.SubElement(assertion, _S + "Subject")
    etree.SubElement(subject, _S + "NameID").text = claims.name_id
    if claims.lifetime is not None:
        etree.SubElement(
            assertion,
            _S + "Conditions",
            NotBefore=instant(now),
            NotOnOrAfter=instant(now + claims.lifetime),
        )
    authn = etree.SubElement(assertion, _S + "AuthnStatement", AuthnInstant=instant(now))
    context = etree.SubElement(authn, _S + "AuthnContext")
    etree.SubElement(context, _S + "AuthnContextClassRef").text = _AUTHN_CONTEXT.get(
        claims.authentication_mode, "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"
    )
    statement = etree.SubElement(assertion, _S + "AttributeStatement")
    patient = claims.patient_id if claims.patient_id.endswith("^NH") else claims.patient_id + "^NH"
    strings = [
        (names.VIHF_VERSION, claims.vihf_version),
        (claims.mode_attribute, claims.authentication_mode),
        (names.STRUCTURE_ID, claims.structure_id),
        (names.ACTIVITY_SECTOR, claims.activity_sector),
        (names.SUBJECT_ID, claims.subject_name),
        (names.RESOURCE_ID, patient),
        (names.RESOURCE_URN, names.RESOURCE_URN_VALUE),
        (names.LPS_ID, claims.installation_id),
        (names.LPS_NAME, claims.software_name),
        (names.LPS_VERSION, claims.software_version),
        (names.LPS_HOMOLOGATION, claims.homologation),
        (
            names.ACCESS_MOTIVE,
            claims.access_motive if claims.access_motive_in == "attribute" else None,
        ),
    ]
    for attr_name, value in strings:
        if value is not None and attr_name not in claims.omit and attr_name not in claims.extra:
            _string_attribute(statement, attr_name, value)
    if names.ROLE not in claims.omit:
        _coded_attribute(statement, names.ROLE, "Role", claims.roles)
    if names.PURPOSE_OF_USE not in claims.omit:
        _coded_attribute(
            statement,
            names.PURPOSE_OF_USE,
            "PurposeOfUse",
            [
                (
                    claims.access_mode,
                    claims.access_mode_system,
                    _ACCESS_DISPLAY.get(claims.access_mode, ""),
                )
            ],
        )
        if claims.access_motive and claims.access_motive_in == "original_text":
            purpose = statement[-1].find(f"{_S}AttributeValue/{{{HL7V3}}}PurposeOfUse")
            if purpose is not None:
                original = etree.SubElement(purpose, f"{{{HL7V3}}}originalText")
                original.text = claims.access_motive
    if claims.confidentiality_codes:
        _coded_attribute(
            statement,
            names.CONFIDENTIALITY_CODE,
            "ConfidentialityCode",
            claims.confidentiality_codes,
        )
    for attr_name, value in claims.extra.items():
        _string_attribute(statement, attr_name, value)
    return assertion


@dataclass(frozen=True)
class SigningCredentials:
    """A private key (PEM) and its certificate chain (PEM, leaf first)."""

    key_pem: bytes
    cert_pems: tuple[bytes, ...]


def sign_assertion(
    assertion: etree._Element, credentials: SigningCredentials, algorithm: str = "rsa-sha256"
) -> etree._Element:
    """Sign ``assertion`` (enveloped, exc-c14n, right after Issuer) and return a re-parsed
    copy: nodes xmlsec creates are invisible to lxml's ``find`` until the tree is re-read."""
    method, digest = SIGNATURE_ALGORITHMS[algorithm]
    signature = xmlsec.template.create(assertion, xmlsec.Transform.EXCL_C14N, method, ns="ds")
    assertion.insert(1, signature)
    reference = xmlsec.template.add_reference(signature, digest, uri="#" + assertion.get("ID", ""))
    xmlsec.template.add_transform(reference, xmlsec.Transform.ENVELOPED)
    xmlsec.template.add_transform(reference, xmlsec.Transform.EXCL_C14N)
    # Left empty: xmlsec writes every certificate loaded into the key.
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    ctx = xmlsec.SignatureContext()
    key = xmlsec.Key.from_memory(credentials.key_pem, xmlsec.KeyFormat.PEM)
    for pem in credentials.cert_pems:
        key.load_cert_from_memory(pem, xmlsec.KeyFormat.PEM)
    ctx.key = key
    xmlsec.tree.add_ids(assertion, ["ID"])
    ctx.sign(signature)
    return etree.fromstring(etree.tostring(assertion))


def security_header(
    assertion: etree._Element, *, timestamp_lifetime: dt.timedelta | None = None
) -> etree._Element:
    """``wsse:Security`` holding ``assertion`` (moved, not copied), optionally after a
    ``wsu:Timestamp``."""
    security = etree.Element(f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
    if timestamp_lifetime is not None:
        now = utcnow()
        stamp = etree.SubElement(security, f"{{{WSU}}}Timestamp", nsmap={"wsu": WSU})
        etree.SubElement(stamp, f"{{{WSU}}}Created").text = instant(now)
        etree.SubElement(stamp, f"{{{WSU}}}Expires").text = instant(now + timestamp_lifetime)
    security.append(assertion)
    return security


@dataclass
class VihfHeaders:
    """A ``header_factory``: a freshly built (and, with credentials, signed) VIHF per call."""

    claims: VihfClaims
    credentials: SigningCredentials | None = None
    algorithm: str = "rsa-sha256"
    timestamp_lifetime: dt.timedelta | None = None

    def assertion(self) -> etree._Element:
        assertion = build_assertion(self.claims)
        if self.credentials is not None:
            assertion = sign_assertion(assertion, self.credentials, self.algorithm)
        return assertion

    def __call__(self) -> list[etree._Element]:
        return [security_header(self.assertion(), timestamp_lifetime=self.timestamp_lifetime)]
