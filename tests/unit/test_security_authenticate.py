"""The whole check on one request: validity window and clock skew, wsu:Timestamp, homologation,
DIRECTE mode with the card certificate (own TLS listener or trusted proxy), configuration."""

from __future__ import annotations

import datetime as dt
import urllib.parse

import pytest
from lxml import etree

from dmp_xds.client.vihf import build_assertion, security_header, sign_assertion, utcnow
from dmp_xds.namespaces import SAML2, WSU
from dmp_xds.security import pki as P
from dmp_xds.security.authenticate import Authenticator, parse_networks
from dmp_xds.security.faults import FAILED_AUTHENTICATION, INVALID_SECURITY, SecurityFault
from dmp_xds.security.principal import AccessMode, AuthenticationMode, PatientRole
from dmp_xds.soap.xmlparser import serialize
from tests.fixtures.metadata import new_patient_id
from tests.fixtures.security import (
    PeerSocket,
    authenticator,
    envelope,
    soap_request,
    vihf_envelope,
)


def check(pki, data: bytes, tmp_path, environ=None, **config):
    return authenticator(pki, **config).authenticate(soap_request(data, tmp_path), environ or {})


def refusal(pki, data: bytes, tmp_path, environ=None, **config) -> SecurityFault:
    with pytest.raises(SecurityFault) as caught:
        check(pki, data, tmp_path, environ, **config)
    return caught.value


def at(offset_s: float):
    moment = utcnow() + dt.timedelta(seconds=offset_s)
    return lambda: moment


# --- validity window --------------------------------------------------------------------------


def test_fresh_assertion_expires_at_its_lifetime(test_pki, tmp_path) -> None:
    principal = check(test_pki, vihf_envelope(test_pki), tmp_path)
    assert (
        dt.timedelta(minutes=4)
        < principal.expires - principal.issue_instant
        <= dt.timedelta(minutes=5)
    )


def test_expired_conditions(test_pki, tmp_path) -> None:
    data = vihf_envelope(test_pki, lifetime=dt.timedelta(seconds=60))
    fault = refusal(test_pki, data, tmp_path, clock=at(61 + 300))
    assert (fault.check, fault.subcode) == ("conditions", FAILED_AUTHENTICATION)
    assert "NotOnOrAfter" in fault.reason
    # Within the clock skew it still passes; with no skew it does not.
    assert check(test_pki, data, tmp_path, clock=at(61 + 200))
    assert refusal(test_pki, data, tmp_path, clock=at(61), skew_s=0).check == "conditions"


def test_too_old_without_conditions(test_pki, tmp_path) -> None:
    """The official samples carry no Conditions: the IssueInstant and a maximum age decide."""
    data = vihf_envelope(test_pki, lifetime=None)
    assert check(test_pki, data, tmp_path, clock=at(500))
    fault = refusal(test_pki, data, tmp_path, clock=at(601))
    assert "older than" in fault.reason
    assert refusal(test_pki, data, tmp_path, clock=at(61), max_age_s=60, skew_s=0)


def test_issued_in_the_future(test_pki, tmp_path) -> None:
    data = vihf_envelope(test_pki)
    fault = refusal(test_pki, data, tmp_path, clock=at(-301))
    assert "future" in fault.reason
    assert check(test_pki, data, tmp_path, clock=at(-200))  # within the skew


def _signed_with_conditions(pki, not_before: str | None, not_on_or_after: str | None) -> bytes:
    assertion = build_assertion(pki.vihf_claims(new_patient_id()))
    conditions = assertion.find(f"{{{SAML2}}}Conditions")
    assert conditions is not None
    for name, value in (("NotBefore", not_before), ("NotOnOrAfter", not_on_or_after)):
        if value is None:
            del conditions.attrib[name]
        else:
            conditions.set(name, value)
    signed = sign_assertion(assertion, pki.credentials())
    return serialize(envelope([security_header(signed)]))


def test_not_yet_valid_conditions(test_pki, tmp_path) -> None:
    later = (utcnow() + dt.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fault = refusal(test_pki, _signed_with_conditions(test_pki, later, None), tmp_path)
    assert "NotBefore" in fault.reason


def test_inverted_and_malformed_conditions(test_pki, tmp_path) -> None:
    now = utcnow()
    early = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    earlier = (now - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = _signed_with_conditions(test_pki, early, earlier)
    assert refusal(test_pki, data, tmp_path).subcode == INVALID_SECURITY
    data = _signed_with_conditions(test_pki, None, "tomorrow")
    assert refusal(test_pki, data, tmp_path).check == "time"


# --- wsu:Timestamp ----------------------------------------------------------------------------


def test_timestamp_is_honoured(test_pki, tmp_path) -> None:
    headers = test_pki.vihf_headers(new_patient_id())
    headers.timestamp_lifetime = dt.timedelta(seconds=30)
    data = serialize(envelope(headers()))
    assert check(test_pki, data, tmp_path)
    fault = refusal(test_pki, data, tmp_path, clock=at(31 + 300))
    assert (fault.check, fault.subcode) == ("timestamp", FAILED_AUTHENTICATION)
    assert refusal(test_pki, data, tmp_path, clock=at(-301)).check == "timestamp"


def test_malformed_timestamps(test_pki, tmp_path) -> None:
    headers = test_pki.vihf_headers(new_patient_id())
    headers.timestamp_lifetime = dt.timedelta(seconds=30)
    root = envelope(headers())
    stamp = root.find(f".//{{{WSU}}}Timestamp")
    assert stamp is not None
    stamp.append(etree.fromstring(etree.tostring(stamp[0])))  # a second Created
    assert refusal(test_pki, serialize(root), tmp_path).check == "timestamp"
    stamp.remove(stamp[-1])
    stamp[1].text = stamp[0].text  # Expires == Created
    assert refusal(test_pki, serialize(root), tmp_path).subcode == INVALID_SECURITY


def test_unknown_elements_in_the_security_header(test_pki, tmp_path) -> None:
    root = envelope(test_pki.vihf_headers(new_patient_id())())
    security = root.find(f".//{{{SAML2}}}Assertion").getparent()
    etree.SubElement(security, "{urn:example}Token")
    assert refusal(test_pki, serialize(root), tmp_path).check == "structure"


# --- homologation and configuration -----------------------------------------------------------


def test_software_must_be_homologated(test_pki, tmp_path) -> None:
    data = vihf_envelope(test_pki)
    fault = refusal(test_pki, data, tmp_path, homologated=("ANOTHER-ONE",))
    assert (fault.check, fault.subcode) == ("homologation", FAILED_AUTHENTICATION)
    assert refusal(test_pki, data, tmp_path, homologated=()).check == "homologation"
    assert check(test_pki, data, tmp_path, homologated=("ANOTHER-ONE", test_pki.homologation))


def test_without_a_trust_store_everything_is_refused(test_pki, tmp_path) -> None:
    policy = authenticator(test_pki).policy
    refusing = Authenticator(None, None, policy)
    assert any("trust store" in p for p in refusing.problems())
    with pytest.raises(SecurityFault) as caught:
        refusing.authenticate(soap_request(vihf_envelope(test_pki), tmp_path), {})
    assert caught.value.check == "configuration"


def test_trusted_proxies_are_addresses_or_networks() -> None:
    assert len(parse_networks(["127.0.0.1", "10.0.0.0/8", "::1"])) == 3
    with pytest.raises(ValueError, match="nginx"):
        parse_networks(["nginx"])


# --- DIRECTE ----------------------------------------------------------------------------------


def direct(pki, professional: str = "medecin", **changes) -> bytes:
    return vihf_envelope(
        pki, professional=professional, authentication_mode="DIRECTE", signer=None, **changes
    )


def own_tls(issued: P.Issued) -> dict:
    from cryptography.hazmat.primitives import serialization

    return {"gunicorn.socket": PeerSocket(issued.cert.public_bytes(serialization.Encoding.DER))}


def proxied(issued: P.Issued, remote: str = "127.0.0.1", escape: bool = True) -> dict:
    pem = issued.cert_pem.decode()
    value = urllib.parse.quote(pem, safe="") if escape else pem.replace("\n", " ")
    return {"HTTP_X_SSL_CLIENT_CERT": value, "REMOTE_ADDR": remote}


def test_directe_with_the_card_on_our_tls_listener(test_pki, tmp_path) -> None:
    medecin = test_pki.professionals["medecin"]
    principal = check(test_pki, direct(test_pki), tmp_path, own_tls(medecin))
    assert principal.authentication_mode is AuthenticationMode.DIRECTE
    assert principal.signer is None
    assert principal.tls_client is not None and "899900000011" in principal.tls_client.subject


@pytest.mark.parametrize("escape", [True, False], ids=["nginx-escaped", "spaces"])
def test_directe_through_a_trusted_proxy(test_pki, tmp_path, escape) -> None:
    environ = proxied(test_pki.professionals["infirmier"], escape=escape)
    principal = check(test_pki, direct(test_pki, "infirmier"), tmp_path, environ)
    assert principal.tls_client is not None


def test_forwarded_certificate_from_an_untrusted_address(test_pki, tmp_path) -> None:
    environ = proxied(test_pki.professionals["medecin"], remote="192.0.2.7")
    fault = refusal(test_pki, direct(test_pki), tmp_path, environ)
    assert (fault.check, fault.subcode) == ("tls_client", FAILED_AUTHENTICATION)
    assert "not a trusted proxy" in fault.reason
    # Refused in indirect mode too: a forwarding header from elsewhere is an anomaly.
    assert refusal(test_pki, vihf_envelope(test_pki), tmp_path, environ).check == "tls_client"


def test_directe_without_a_certificate(test_pki, tmp_path) -> None:
    fault = refusal(test_pki, direct(test_pki), tmp_path, {"gunicorn.socket": PeerSocket(None)})
    assert (fault.check, fault.subcode) == ("tls_client", FAILED_AUTHENTICATION)
    assert refusal(test_pki, direct(test_pki), tmp_path, {}).check == "tls_client"


def test_directe_with_another_professionals_card(test_pki, tmp_path) -> None:
    environ = own_tls(test_pki.professionals["sage-femme"])
    fault = refusal(test_pki, direct(test_pki, "medecin"), tmp_path, environ)
    assert "another professional" in fault.reason


def test_directe_with_an_untrusted_card(test_pki, tmp_path) -> None:
    rogue = P.create_ca(test_pki.ca.cert.subject, key=test_pki.server.key)
    medecin = test_pki.professionals["medecin"]
    fake = P.issue(rogue, medecin.cert.subject, key=medecin.key, usage=P.CARD)
    fault = refusal(test_pki, direct(test_pki), tmp_path, own_tls(fake))
    assert fault.check == "certificate"


def test_directe_with_a_signed_vihf_checks_both(test_pki, tmp_path) -> None:
    data = vihf_envelope(test_pki, authentication_mode="DIRECTE", signer="medecin")
    principal = check(test_pki, data, tmp_path, own_tls(test_pki.professionals["medecin"]))
    assert principal.signer is not None and principal.tls_client is not None
    # The signature does not replace the card on the connection.
    assert refusal(test_pki, data, tmp_path, {}).check == "tls_client"


def test_malformed_forwarded_certificate(test_pki, tmp_path) -> None:
    environ = {"HTTP_X_SSL_CLIENT_CERT": "not%20a%20certificate", "REMOTE_ADDR": "127.0.0.1"}
    fault = refusal(test_pki, direct(test_pki), tmp_path, environ)
    assert (fault.check, fault.subcode) == ("tls_client", INVALID_SECURITY)


def test_institution_vouches_for_its_own_structure_only(test_pki, tmp_path) -> None:
    data = vihf_envelope(test_pki, structure_id="10B0000009")
    fault = refusal(test_pki, data, tmp_path)
    assert (fault.check, fault.subcode) == ("structure", FAILED_AUTHENTICATION)
    # In DIRECTE mode the card names a person, not a structure: no such binding.
    signed_by_card = vihf_envelope(
        test_pki, authentication_mode="DIRECTE", signer="medecin", structure_id="10B0000009"
    )
    assert check(test_pki, signed_by_card, tmp_path, own_tls(test_pki.professionals["medecin"]))


# --- patients, through the host's patient portal ------------------------------------------------


def test_a_patient_portal_vouches_for_the_patient_and_a_representative(test_pki, tmp_path):
    patient_id = new_patient_id()
    patient = check(test_pki, vihf_envelope(test_pki, patient_id, "patient"), tmp_path)
    assert patient.patient_role is PatientRole.PATIENT
    assert patient.name_id == patient.patient.id and patient.structure_id == test_pki.portal_id
    assert patient.specialty is None  # a patient role needs none (professions 10/21 do)
    guardian = check(test_pki, vihf_envelope(test_pki, patient_id, "representant"), tmp_path)
    assert guardian.patient_role is PatientRole.LEGAL_REPRESENTATIVE
    assert guardian.name_id == P.TEST_REPRESENTATIVE_ID


@pytest.mark.parametrize(
    ("who", "changes", "config", "says"),
    [
        # the institution is no patient portal, though it signs for its own structure
        (
            "patient",
            {"structure_id": P.TEST_STRUCTURE_ID, "signer": "institution"},
            {},
            "patient portal",
        ),
        ("representant", {"structure_id": P.TEST_STRUCTURE_ID, "signer": "institution"}, {}, ""),
        # a server that trusts no portal (the default) lets no patient in
        ("patient", {}, {"patient_portals": ()}, "DMP_XDS_PATIENT_PORTALS"),
        # the patient is the record's patient, nobody else
        ("patient", {"name_id": "1234567890123"}, {}, "Subject NameID"),
        # the portal vouches in plain indirect mode; AIR and cards act as professionals
        ("patient", {"authentication_mode": "INDIRECTE_RENFORCEE"}, {}, "INDIRECTE mode"),
        ("representant", {"authentication_mode": "INDIRECTE_RENFORCEE"}, {}, "INDIRECTE"),
    ],
)
def test_forged_patient_vihfs_are_refused(test_pki, tmp_path, who, changes, config, says):
    data = vihf_envelope(test_pki, new_patient_id(), who, **changes)
    fault = refusal(test_pki, data, tmp_path, **config)
    assert (fault.check, fault.subcode) == ("patient_role", FAILED_AUTHENTICATION)
    assert says in fault.reason


def test_a_professional_role_still_needs_its_specialty(test_pki, tmp_path) -> None:
    """The patient roles pass the role checks without weakening the professionals' ones."""
    pro = test_pki.professional("medecin")
    data = vihf_envelope(test_pki, roles=(pro.profession,))
    fault = refusal(test_pki, data, tmp_path)
    assert fault.subcode == INVALID_SECURITY and "requires a specialty" in fault.reason


# --- emergency motive ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bris_de_glace", "BRIS_DE_GLACE", "centre_15"])
def test_a_required_motive_must_be_given(test_pki, tmp_path, mode: str) -> None:
    """DMP_XDS_MOTIVE_REQUIRED: the listed emergency modes must say why (attribute or the
    PurposeOfUse's originalText); by default a motive is recorded, never required."""
    required = frozenset({AccessMode.BRIS_DE_GLACE, AccessMode.CENTRE_15})
    bare = vihf_envelope(test_pki, access_mode=mode)
    fault = refusal(test_pki, bare, tmp_path, motive_required=required)
    assert (fault.check, fault.subcode) == ("access_motive", FAILED_AUTHENTICATION)
    assert "motive" in fault.reason
    assert check(test_pki, vihf_envelope(test_pki, access_mode=mode), tmp_path)  # not required
    for place in ("attribute", "original_text"):
        given = vihf_envelope(
            test_pki, access_mode=mode, access_motive="Arrêt cardiaque", access_motive_in=place
        )
        principal = check(test_pki, given, tmp_path, motive_required=required)
        assert principal.access_motive == "Arrêt cardiaque"
    # normal access never needs one, whatever is listed
    assert check(test_pki, vihf_envelope(test_pki), tmp_path, motive_required=required)


def test_motive_required_configuration() -> None:
    from dmp_xds.config import Settings
    from dmp_xds.security.authenticate import SecurityPolicy

    policy = SecurityPolicy.from_settings(Settings(motive_required=(" Bris_de_Glace ",)))
    assert policy.motive_required == {AccessMode.BRIS_DE_GLACE}
    with pytest.raises(ValueError, match="DMP_XDS_MOTIVE_REQUIRED"):
        SecurityPolicy.from_settings(Settings(motive_required=("urgence",)))
