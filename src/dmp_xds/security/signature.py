"""Finding the VIHF in the envelope and checking its XML signature, strictly.

xmlsec proves that *a* signature is mathematically valid; it does not say which element the
application should then trust. Signature-wrapping attacks (XSW) exploit exactly that gap: the
signed assertion is moved somewhere harmless and a forged one is put where the application
reads. So before any cryptography the envelope must have the one shape we accept:

- exactly one ``wsse:Security`` element in the whole envelope, a child of the SOAP Header, holding
  exactly one ``saml2:Assertion`` (and at most a ``wsu:Timestamp``), and no other Assertion
  anywhere in the document;
- the assertion's ``ID`` is an NCName that no other element of the document carries as an id
  attribute (``ID``, ``Id``, ``id``, ``wsu:Id``, ``xml:id``);
- at most one ``ds:Signature`` in the document, a child of the assertion placed right after
  ``Issuer`` (the SAML schema's position), with exactly one Reference whose URI is ``#`` + that
  ID, the transforms exactly enveloped-signature then exclusive c14n, and algorithms on the
  configured allow-list;
- ``KeyInfo`` carries X.509 certificates only (never a bare ``KeyValue``): the key that verifies
  is the one of the certificate *we* validated against the trust store, so KeyInfo never
  chooses the key.

Attributes are then read from that same assertion element only. Comments are removed by the
hardened parser before anything runs, and exclusive c14n without comments ignores them too, so a
comment injected into a signed value cannot truncate what we read.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

import xmlsec
from lxml import etree

from ..namespaces import DS, SAML2, WSSE, WSU
from .faults import failed, invalid

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"

_T = xmlsec.Transform
# Named suites for configuration (DMP_XDS_SIGNATURE_ALGORITHMS): signature method and the
# digest method that goes with it.
SUITES: dict[str, tuple[xmlsec.Transform, xmlsec.Transform]] = {
    "rsa-sha256": (_T.RSA_SHA256, _T.SHA256),
    "rsa-sha384": (_T.RSA_SHA384, _T.SHA384),
    "rsa-sha512": (_T.RSA_SHA512, _T.SHA512),
    "rsa-sha1": (_T.RSA_SHA1, _T.SHA1),
}
DEFAULT_SUITES = ("rsa-sha256", "rsa-sha1")
MAX_CERTIFICATES = 5
_NCNAME = re.compile(r"[A-Za-z_][\w.\-]{0,127}\Z")
_D = f"{{{DS}}}"
_EC_INCLUSIVE = f"{{{EXC_C14N}}}InclusiveNamespaces"


@dataclass(frozen=True)
class AlgorithmPolicy:
    """Accepted SignatureMethod and DigestMethod algorithms (by URI)."""

    signature_methods: frozenset[str]
    digest_methods: frozenset[str]
    _transforms: tuple[xmlsec.Transform, ...] = ()

    @classmethod
    def from_names(cls, names: Iterable[str]) -> AlgorithmPolicy:
        chosen = [n.strip().lower() for n in names if n.strip()]
        unknown = [n for n in chosen if n not in SUITES]
        if unknown or not chosen:
            raise ValueError(
                f"signature algorithms must be among {', '.join(SUITES)}; got {list(names)!r}"
            )
        pairs = [SUITES[n] for n in chosen]
        return cls(
            frozenset(s.href for s, _ in pairs),
            frozenset(d.href for _, d in pairs),
            tuple(t for pair in pairs for t in pair),
        )

    def enable_in(self, ctx: xmlsec.SignatureContext) -> None:
        """Restrict xmlsec itself to these algorithms too (defence in depth)."""
        ctx.enable_signature_transform(_T.EXCL_C14N)
        ctx.enable_reference_transform(_T.ENVELOPED)
        ctx.enable_reference_transform(_T.EXCL_C14N)
        for transform in self._transforms:
            if transform.usage & 8:  # a signature method
                ctx.enable_signature_transform(transform)
            else:
                ctx.enable_reference_transform(transform)


@dataclass
class Located:
    """The parts of the security header, each found exactly where we expect it."""

    security: etree._Element
    assertion: etree._Element
    assertion_id: str
    timestamp: etree._Element | None
    signature: etree._Element | None


def _elements(parent: etree._Element) -> list[etree._Element]:
    return [c for c in parent if isinstance(c.tag, str)]


def locate(envelope: etree._Element, header: etree._Element | None) -> Located:
    """Find the one VIHF assertion of ``envelope`` or raise ``wsse:InvalidSecurity``."""
    securities = list(envelope.iter(f"{{{WSSE}}}Security"))
    if not securities:
        raise invalid("missing", "no wsse:Security header: every call needs a VIHF assertion")
    if len(securities) > 1:
        raise invalid("structure", "more than one wsse:Security element")
    security = securities[0]
    if header is None or security.getparent() is not header:
        raise invalid("structure", "wsse:Security must be a block of the SOAP Header")
    assertions = list(envelope.iter(f"{{{SAML2}}}Assertion"))
    if not assertions:
        raise invalid("missing", "wsse:Security holds no SAML 2.0 Assertion (VIHF)")
    if len(assertions) > 1:
        raise invalid("structure", "more than one SAML Assertion in the message")
    assertion = assertions[0]
    if assertion.getparent() is not security:
        raise invalid("structure", "the SAML Assertion must be a direct child of wsse:Security")
    timestamp = None
    for child in _elements(security):
        if child is assertion:
            continue
        if child.tag == f"{{{WSU}}}Timestamp" and timestamp is None:
            timestamp = child
            continue
        raise invalid(
            "structure", f"unexpected element {etree.QName(child).localname} in wsse:Security"
        )
    assertion_id = assertion.get("ID") or ""
    if not _NCNAME.match(assertion_id):
        raise invalid("assertion_id", "the assertion's ID is missing or not an XML NCName")
    _check_unique_id(envelope, assertion, assertion_id)
    signatures = list(envelope.iter(_D + "Signature"))
    if len(signatures) > 1:
        raise invalid("signature_structure", "more than one ds:Signature in the message")
    signature = signatures[0] if signatures else None
    if signature is not None:
        children = _elements(assertion)
        if (
            signature.getparent() is not assertion
            or children.index(signature) != 1
            or children[0].tag != f"{{{SAML2}}}Issuer"
        ):
            raise invalid(
                "signature_structure",
                "ds:Signature must be the assertion's child right after saml2:Issuer",
            )
    return Located(security, assertion, assertion_id, timestamp, signature)


def _check_unique_id(envelope: etree._Element, assertion: etree._Element, value: str) -> None:
    """No other element of the message carries the VIHF's ID in an ID-like attribute (ID, Id,
    id, xml:id, in any namespace): the candidates are found by libxml2, then compared here."""
    for found in _ID_ATTRIBUTES(envelope, value=value):
        if found.strip() != value:
            continue
        if found.getparent() is assertion and found.attrname == "ID":
            continue
        raise invalid("duplicate_id", "another element of the message carries the VIHF's ID")


_ID_ATTRIBUTES = etree.XPath(
    "//@*[local-name() = 'ID' or local-name() = 'Id' or local-name() = 'id'][contains(., $value)]"
)


@dataclass(frozen=True)
class SignatureFacts:
    signature_method: str
    digest_method: str
    certificates: tuple[bytes, ...]  # DER, in document order


def check_structure(
    signature: etree._Element, assertion_id: str, policy: AlgorithmPolicy
) -> SignatureFacts:
    """The enveloped-signature profile we accept, element by element."""
    parts = _elements(signature)
    if [p.tag for p in parts] != [_D + "SignedInfo", _D + "SignatureValue", _D + "KeyInfo"]:
        raise invalid(
            "signature_structure",
            "ds:Signature must hold exactly SignedInfo, SignatureValue and KeyInfo",
        )
    signed_info, _value, key_info = parts
    info = _elements(signed_info)
    if [p.tag for p in info] != [
        _D + "CanonicalizationMethod",
        _D + "SignatureMethod",
        _D + "Reference",
    ]:
        raise invalid(
            "signature_structure",
            "SignedInfo must hold exactly CanonicalizationMethod, SignatureMethod and one "
            "Reference",
        )
    c14n, method, reference = info
    _check_c14n(c14n, "CanonicalizationMethod")
    signature_method = method.get("Algorithm", "")
    if signature_method not in policy.signature_methods or _elements(method):
        raise invalid(
            "algorithm", f"SignatureMethod {signature_method!r} is not an accepted algorithm"
        )
    if reference.get("URI") != "#" + assertion_id:
        raise invalid(
            "reference", "the signature's Reference must point at the assertion ('#' + its ID)"
        )
    ref_parts = _elements(reference)
    if [p.tag for p in ref_parts] != [_D + "Transforms", _D + "DigestMethod", _D + "DigestValue"]:
        raise invalid(
            "signature_structure", "Reference must hold Transforms, DigestMethod and DigestValue"
        )
    transforms, digest, _digest_value = ref_parts
    steps = _elements(transforms)
    if (
        len(steps) != 2
        or any(s.tag != _D + "Transform" for s in steps)
        or steps[0].get("Algorithm") != ENVELOPED
        or _elements(steps[0])
    ):
        raise invalid(
            "transforms", "the transforms must be exactly enveloped-signature then exc-c14n"
        )
    _check_c14n(steps[1], "the second Transform")
    digest_method = digest.get("Algorithm", "")
    if digest_method not in policy.digest_methods or _elements(digest):
        raise invalid("algorithm", f"DigestMethod {digest_method!r} is not an accepted algorithm")
    return SignatureFacts(signature_method, digest_method, _certificates(key_info))


def _check_c14n(element: etree._Element, what: str) -> None:
    """Exclusive c14n without comments, optionally with an InclusiveNamespaces prefix list
    (the 2024 ANS sample uses one)."""
    children = _elements(element)
    if element.get("Algorithm") != EXC_C14N or any(c.tag != _EC_INCLUSIVE for c in children):
        raise invalid("transforms", f"{what} must be exclusive XML canonicalisation ({EXC_C14N})")
    if len(children) > 1:
        raise invalid("transforms", f"{what} has more than one InclusiveNamespaces")


def _certificates(key_info: etree._Element) -> tuple[bytes, ...]:
    data = _elements(key_info)
    if len(data) != 1 or data[0].tag != _D + "X509Data":
        raise invalid(
            "key_info", "KeyInfo must hold one X509Data (a KeyValue alone is never trusted)"
        )
    certs = []
    for item in _elements(data[0]):
        if item.tag == _D + "X509Certificate":
            try:
                certs.append(base64.b64decode("".join((item.text or "").split()), validate=True))
            except (binascii.Error, ValueError):
                raise invalid("key_info", "X509Certificate is not valid base64") from None
        elif item.tag not in (_D + "X509IssuerSerial", _D + "X509SubjectName", _D + "X509SKI"):
            raise invalid("key_info", f"unexpected {etree.QName(item).localname} in X509Data")
    if not certs or len(certs) > MAX_CERTIFICATES:
        raise invalid(
            "key_info", f"X509Data must carry 1 to {MAX_CERTIFICATES} X509Certificate elements"
        )
    return tuple(certs)


def verify(
    signature: etree._Element,
    assertion: etree._Element,
    key: xmlsec.Key,
    policy: AlgorithmPolicy,
) -> None:
    """Check the signature value and digest with ``key`` (from the validated certificate).

    IDs are registered on the assertion's subtree only; :func:`locate` already made sure the
    ID is unique in the whole document, so the Reference can resolve to nothing else.
    """
    xmlsec.tree.add_ids(assertion, ["ID"])
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    policy.enable_in(ctx)
    try:
        ctx.verify(signature)
    except xmlsec.Error:
        raise failed("signature", "the VIHF signature does not verify") from None
