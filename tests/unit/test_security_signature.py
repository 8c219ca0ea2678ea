"""The VIHF signature: valid ones verify (under ours and under signxml), every wrapping,
tampering and structural trick is refused by ours (and by signxml where it applies)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import xmlsec
from lxml import etree

from dmp_xds.namespaces import DS, SAML2, SOAP12, WSA, WSSE, WSU
from dmp_xds.security.faults import FAILED_AUTHENTICATION, INVALID_SECURITY, SecurityFault
from dmp_xds.security.signature import AlgorithmPolicy
from dmp_xds.soap.xmlparser import serialize
from tests.fixtures.metadata import new_patient_id
from tests.fixtures.security import (
    assertion_of,
    authenticator,
    parse,
    security_of,
    signxml_verify,
    soap_request,
    vihf_envelope,
    xsw_variants,
)

_D = f"{{{DS}}}"
_S = f"{{{SAML2}}}"


def refused(pki, data: bytes, tmp_path: Path, **config) -> SecurityFault:
    with pytest.raises(SecurityFault) as caught:
        authenticator(pki, **config).authenticate(soap_request(data, tmp_path), {})
    return caught.value


def accepted(pki, data: bytes, tmp_path: Path, **config):
    return authenticator(pki, **config).authenticate(soap_request(data, tmp_path), {})


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "rsa-sha1"])
def test_a_valid_vihf_verifies_under_ours_and_signxml(test_pki, tmp_path, algorithm) -> None:
    patient = new_patient_id()
    data = vihf_envelope(test_pki, patient, algorithm=algorithm)
    principal = accepted(test_pki, data, tmp_path)
    assert principal.patient.canonical == patient
    assert principal.signer is not None
    assert principal.signer.subject == test_pki.institution.cert.subject.rfc4514_string()
    signed = signxml_verify(data, test_pki.ca_file, sha1=algorithm == "rsa-sha1")
    assert signed.get("ID") == principal.assertion_id


@pytest.mark.parametrize(
    "name",
    [
        "XSW1",
        "XSW2",
        "XSW3",
        "XSW4",
        "XSW5",
        "XSW6",
        "XSW7",
        "XSW8",
        "wrapper-sibling",
        "original-in-another-header",
        "second-security-header",
    ],
)
def test_signature_wrapping_is_refused_by_ours_and_signxml(test_pki, tmp_path, name) -> None:
    genuine = new_patient_id()
    victim = new_patient_id()
    data = vihf_envelope(test_pki, genuine)
    hostile = xsw_variants(data, victim)[name]
    matricule = victim.split("^")[0]
    assert matricule.encode() in hostile  # the forged assertion is really there
    fault = refused(test_pki, hostile, tmp_path)
    assert fault.subcode == INVALID_SECURITY
    assert fault.check in {"structure", "signature_structure", "duplicate_id"}
    # The independent oracle refuses it too, or at least never vouches for the forged patient.
    try:
        signed = signxml_verify(hostile, test_pki.ca_file)
    except Exception:  # any refusal by signxml is what we want
        return
    assert matricule not in etree.tostring(signed).decode()


def test_tampered_attribute_fails_the_signature(test_pki, tmp_path) -> None:
    root = parse(vihf_envelope(test_pki))
    for value in assertion_of(root).iter(_S + "AttributeValue"):
        if value.text == test_pki.homologation:
            value.text = "SOMETHING-ELSE"
    fault = refused(test_pki, serialize(root), tmp_path, homologated=("SOMETHING-ELSE",))
    assert (fault.check, fault.subcode) == ("signature", FAILED_AUTHENTICATION)
    with pytest.raises(Exception):  # noqa: B017 - signxml's own error types
        signxml_verify(serialize(root), test_pki.ca_file)


def test_tampered_signature_value_fails(test_pki, tmp_path) -> None:
    root = parse(vihf_envelope(test_pki))
    value = root.find(f".//{_D}SignatureValue")
    assert value is not None and value.text
    text = "".join(value.text.split())
    value.text = ("A" if text[0] != "A" else "B") + text[1:]
    assert refused(test_pki, serialize(root), tmp_path).check == "signature"


@pytest.mark.parametrize(
    "where",
    ["wsa-message-id", "wsu-id-on-body", "xml-id", "lower-id-on-payload", "id-in-assertion"],
)
def test_duplicate_ids_are_refused(test_pki, tmp_path, where) -> None:
    root = parse(vihf_envelope(test_pki))
    assertion = assertion_of(root)
    value = assertion.get("ID")
    body = root.find(f"{{{SOAP12}}}Body")
    assert body is not None
    if where == "wsa-message-id":
        message_id = root.find(f".//{{{WSA}}}MessageID")
        assert message_id is not None
        message_id.set("ID", value)
    elif where == "wsu-id-on-body":
        body.set(f"{{{WSU}}}Id", value)
    elif where == "xml-id":
        body[0].set("{http://www.w3.org/XML/1998/namespace}id", value)
    elif where == "lower-id-on-payload":
        body[0].set("id", value)
    else:  # an element inside the assertion (changes the digest, but we refuse before that)
        subject = assertion.find(_S + "Subject")
        assert subject is not None
        subject.set("ID", value)
    assert refused(test_pki, serialize(root), tmp_path).check == "duplicate_id"


@pytest.mark.parametrize(
    "uri", ["", "#xpointer(/)", "#xpointer(id('{id}'))", "#{id}x", "#{id} ", "{id}"]
)
def test_references_other_than_the_assertion_are_refused(test_pki, tmp_path, uri) -> None:
    root = parse(vihf_envelope(test_pki))
    assertion = assertion_of(root)
    reference = assertion.find(f"{_D}Signature/{_D}SignedInfo/{_D}Reference")
    assert reference is not None
    reference.set("URI", uri.format(id=assertion.get("ID")))
    assert refused(test_pki, serialize(root), tmp_path).check == "reference"


def test_a_valid_signature_over_another_element_is_refused(test_pki, tmp_path) -> None:
    """The signature is genuine but covers a header block, not the assertion."""
    root = parse(vihf_envelope(test_pki))
    assertion = assertion_of(root)
    signature = assertion.find(f"{_D}Signature")
    assert signature is not None
    assertion.remove(signature)
    other = etree.SubElement(security_of(root).getparent(), "{urn:example}Other", ID="_other")
    other.text = "signed, but not the VIHF"
    sig = xmlsec.template.create(
        root, xmlsec.Transform.EXCL_C14N, xmlsec.Transform.RSA_SHA256, ns="ds"
    )
    assertion.insert(1, sig)
    ref = xmlsec.template.add_reference(sig, xmlsec.Transform.SHA256, uri="#_other")
    xmlsec.template.add_transform(ref, xmlsec.Transform.ENVELOPED)
    xmlsec.template.add_transform(ref, xmlsec.Transform.EXCL_C14N)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(sig))
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(test_pki.institution.key_pem, xmlsec.KeyFormat.PEM)
    ctx.key.load_cert_from_memory(test_pki.institution.cert_pem, xmlsec.KeyFormat.PEM)
    xmlsec.tree.add_ids(root, ["ID"])
    ctx.sign(sig)
    data = serialize(root)
    assert refused(test_pki, data, tmp_path).check == "reference"
    try:
        signed = signxml_verify(data, test_pki.ca_file)
    except Exception:
        return
    assert signed.tag != f"{_S}Assertion"  # signxml says what it verified: not the VIHF


def test_rsa_sha1_is_accepted_only_when_configured(test_pki, tmp_path) -> None:
    data = vihf_envelope(test_pki, algorithm="rsa-sha1")
    assert accepted(test_pki, data, tmp_path, algorithms=("rsa-sha256", "rsa-sha1"))
    fault = refused(test_pki, data, tmp_path, algorithms=("rsa-sha256",))
    assert (fault.check, fault.subcode) == ("algorithm", INVALID_SECURITY)


def test_sha1_digest_under_an_sha256_signature_needs_sha1_enabled(test_pki, tmp_path) -> None:
    root = parse(vihf_envelope(test_pki))
    digest = root.find(f".//{_D}DigestMethod")
    assert digest is not None
    digest.set("Algorithm", xmlsec.Transform.SHA1.href)
    assert refused(test_pki, serialize(root), tmp_path, algorithms=("rsa-sha256",)).check == (
        "algorithm"
    )


def test_unknown_algorithm_names_are_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="rsa-md5"):
        AlgorithmPolicy.from_names(["rsa-sha256", "rsa-md5"])
    with pytest.raises(ValueError):
        AlgorithmPolicy.from_names([])


def _edit_signature(test_pki, edit) -> bytes:
    root = parse(vihf_envelope(test_pki))
    signature = assertion_of(root).find(f"{_D}Signature")
    assert signature is not None
    edit(root, signature)
    return serialize(root)


def _key_value_only(root, signature):
    key_info = signature.find(f"{_D}KeyInfo")
    for child in list(key_info):
        key_info.remove(child)
    etree.SubElement(etree.SubElement(key_info, f"{_D}KeyValue"), f"{_D}RSAKeyValue")


def _no_key_info(root, signature):
    signature.remove(signature.find(f"{_D}KeyInfo"))


def _object(root, signature):
    etree.SubElement(signature, f"{_D}Object").text = "anything"


def _two_references(root, signature):
    info = signature.find(f"{_D}SignedInfo")
    info.append(copy.deepcopy(info.find(f"{_D}Reference")))


def _extra_transform(root, signature):
    transforms = signature.find(f".//{_D}Transforms")
    etree.SubElement(
        transforms, f"{_D}Transform", Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"
    )


def _c14n_with_comments(root, signature):
    signature.find(f".//{_D}CanonicalizationMethod").set(
        "Algorithm", "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
    )


def _inclusive_c14n(root, signature):
    transforms = signature.find(f".//{_D}Transforms")
    transforms[1].set("Algorithm", "http://www.w3.org/TR/2001/REC-xml-c14n-20010315")


def _signature_at_the_end(root, signature):
    assertion = signature.getparent()
    assertion.remove(signature)
    assertion.append(signature)


def _hmac_output_length(root, signature):
    method = signature.find(f".//{_D}SignatureMethod")
    etree.SubElement(method, f"{_D}HMACOutputLength").text = "8"


def _bad_certificate(root, signature):
    signature.find(f".//{_D}X509Certificate").text = "bm90IGEgY2VydGlmaWNhdGU="


@pytest.mark.parametrize(
    ("edit", "check"),
    [
        (_key_value_only, "key_info"),
        (_no_key_info, "signature_structure"),
        (_object, "signature_structure"),
        (_two_references, "signature_structure"),
        (_extra_transform, "transforms"),
        (_c14n_with_comments, "transforms"),
        (_inclusive_c14n, "transforms"),
        (_signature_at_the_end, "signature_structure"),
        (_hmac_output_length, "algorithm"),
        (_bad_certificate, "certificate"),
    ],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_signature_profile_is_strict(test_pki, tmp_path, edit, check) -> None:
    fault = refused(test_pki, _edit_signature(test_pki, edit), tmp_path)
    assert fault.check == check
    assert fault.subcode == INVALID_SECURITY


def test_inclusive_namespaces_prefix_list_is_accepted(test_pki, tmp_path) -> None:
    """The 2024 ANS sample's exc-c14n carries an InclusiveNamespaces PrefixList."""
    from dmp_xds.client.vihf import build_assertion, security_header

    assertion = build_assertion(test_pki.vihf_claims(new_patient_id()))
    signature = xmlsec.template.create(
        assertion, xmlsec.Transform.EXCL_C14N, xmlsec.Transform.RSA_SHA256, ns="ds"
    )
    assertion.insert(1, signature)
    reference = xmlsec.template.add_reference(
        signature, xmlsec.Transform.SHA256, uri="#" + assertion.get("ID")
    )
    xmlsec.template.add_transform(reference, xmlsec.Transform.ENVELOPED)
    transform = xmlsec.template.add_transform(reference, xmlsec.Transform.EXCL_C14N)
    xmlsec.template.transform_add_c14n_inclusive_namespaces(transform, ["ds", "saml", "xsi"])
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(test_pki.institution.key_pem, xmlsec.KeyFormat.PEM)
    ctx.key.load_cert_from_memory(test_pki.institution.cert_pem, xmlsec.KeyFormat.PEM)
    xmlsec.tree.add_ids(assertion, ["ID"])
    ctx.sign(signature)
    signed = etree.fromstring(etree.tostring(assertion))
    from tests.fixtures.security import envelope

    data = serialize(envelope([security_header(signed)]))
    assert accepted(test_pki, data, tmp_path)
    signxml_verify(data, test_pki.ca_file)


def test_comment_in_a_signed_value_cannot_truncate_it(test_pki, tmp_path) -> None:
    """The classic SAML comment injection: a comment splits a signed text value; a reader
    taking the first text node would see a different identifier. Comments are removed at
    parse time and exc-c14n ignores them, so the signature holds and we read the whole value."""
    root = parse(vihf_envelope(test_pki))
    name_id = assertion_of(root).find(f"{_S}Subject/{_S}NameID")
    assert name_id is not None
    full = name_id.text
    data = serialize(root).replace(
        f"<saml2:NameID>{full}</saml2:NameID>".encode(),
        f"<saml2:NameID>{full[:4]}<!-- injected -->{full[4:]}</saml2:NameID>".encode(),
    )
    assert b"<!-- injected -->" in data
    principal = accepted(test_pki, data, tmp_path)
    assert principal.name_id == full


def test_security_header_without_assertion_and_missing_header(test_pki, tmp_path) -> None:
    from tests.fixtures.security import envelope

    empty = serialize(envelope([etree.Element(f"{{{WSSE}}}Security")]))
    assert refused(test_pki, empty, tmp_path).check == "missing"
    none = serialize(envelope([]))
    fault = refused(test_pki, none, tmp_path)
    assert (fault.check, fault.subcode) == ("missing", INVALID_SECURITY)


def test_unsigned_indirect_vihf_is_refused(test_pki, tmp_path) -> None:
    data = vihf_envelope(test_pki, signer=None)
    fault = refused(test_pki, data, tmp_path)
    assert (fault.check, fault.subcode) == ("signature_missing", FAILED_AUTHENTICATION)


def test_assertion_id_must_be_an_ncname(test_pki, tmp_path) -> None:
    root = parse(vihf_envelope(test_pki, signer=None))
    assertion_of(root).set("ID", "1-starts-with-a-digit")
    assert refused(test_pki, serialize(root), tmp_path).check == "assertion_id"
