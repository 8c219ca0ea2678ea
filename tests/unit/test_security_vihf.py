"""Reading the VIHF's attributes into a Principal: names as the French specification spells
them, every required attribute present and well-formed, access modes, patient."""

from __future__ import annotations

import pytest
from lxml import etree

from dmp_xds.client.vihf import build_assertion
from dmp_xds.security import vihf as names
from dmp_xds.security.faults import INVALID_SECURITY, SecurityFault
from dmp_xds.security.principal import AccessMode, AuthenticationMode
from dmp_xds.security.vihf import parse_instant, read_vihf
from tests.fixtures.metadata import new_patient_id
from tests.fixtures.security import authenticator, soap_request, vihf_envelope

REQUIRED = [
    names.VIHF_VERSION,
    names.AUTHENTICATION_MODE,
    names.STRUCTURE_ID,
    names.ACTIVITY_SECTOR,
    names.SUBJECT_ID,
    names.ROLE,
    names.RESOURCE_ID,
    names.RESOURCE_URN,
    names.PURPOSE_OF_USE,
    names.LPS_NAME,
    names.LPS_VERSION,
    names.LPS_HOMOLOGATION,
]


def read(pki, patient_id: str | None = None, professional: str = "medecin", **changes):
    claims = pki.vihf_claims(patient_id or new_patient_id(), professional, **changes)
    return read_vihf(build_assertion(claims))


def refused(pki, **changes) -> SecurityFault:
    with pytest.raises(SecurityFault) as caught:
        read(pki, **changes)
    assert caught.value.subcode == INVALID_SECURITY
    return caught.value


def test_everything_the_principal_exposes(test_pki) -> None:
    patient = new_patient_id()
    vihf = read(
        test_pki, patient, confidentiality_codes=(("MINOR", "1.2.250.1.213.1.1.4.13", "x"),)
    )
    p = vihf.principal
    assert p.name_id == "899900000011" and p.id_kind == "RPPS"
    assert p.subject_name == "MEDECIN CLAIRE"
    assert (p.profession.code, p.profession.system) == ("10", "1.2.250.1.71.1.2.7")
    assert p.specialty is not None and p.specialty.code == "SM26"
    assert p.structure_id == test_pki.structure_id
    assert (p.activity_sector.code, p.activity_sector.system) == ("SA07", "1.2.250.1.71.4.2.4")
    assert p.authentication_mode is AuthenticationMode.INDIRECTE
    assert p.access_mode is AccessMode.NORMAL
    assert p.patient.canonical == patient
    assert p.software.homologation == test_pki.homologation
    assert p.software.name and p.software.version and p.software.installation_id
    assert p.vihf_version == "3.0"
    assert p.confidentiality_codes[0].code == "MINOR"
    assert vihf.not_before is not None and vihf.not_on_or_after is not None
    facts = p.log_facts()
    assert patient.split("^")[0] not in str(facts)  # logs never carry the patient id
    assert facts["patient_hash"] == p.patient_hash


@pytest.mark.parametrize("missing", REQUIRED)
def test_each_required_attribute(test_pki, missing) -> None:
    fault = refused(test_pki, omit=frozenset({missing}))
    assert missing in fault.reason
    assert fault.check == "attributes"


def test_optional_attributes(test_pki) -> None:
    p = read(test_pki, installation_id=None, lifetime=None).principal
    assert p.software.installation_id is None
    direct = read(test_pki, authentication_mode="DIRECTE", subject_name=None).principal
    assert direct.subject_name is None  # absent in the official DIRECTE samples


@pytest.mark.parametrize(
    "spelling",
    [
        "Authentification_mode",
        "Authentification_Mode",
        "Authentication_mode",
        "AUTHENTICATION_MODE",
    ],
)
def test_both_spellings_of_the_authentication_mode(test_pki, spelling) -> None:
    p = read(test_pki, mode_attribute=spelling, authentication_mode="INDIRECTE_RENFORCEE").principal
    assert p.authentication_mode is AuthenticationMode.INDIRECTE_RENFORCEE


def test_two_spellings_at_once_are_ambiguous(test_pki) -> None:
    fault = refused(test_pki, extra={"Authentication_mode": "DIRECTE"})
    assert "more than once" in fault.reason


def test_unknown_authentication_mode(test_pki) -> None:
    assert "unknown" in refused(test_pki, authentication_mode="SANS_CARTE").reason


@pytest.mark.parametrize(
    ("code", "mode"),
    [
        ("normal", AccessMode.NORMAL),
        ("bris_de_glace", AccessMode.BRIS_DE_GLACE),
        ("centre_15", AccessMode.CENTRE_15),
        ("BRIS_DE_GLACE", AccessMode.BRIS_DE_GLACE),
        ("Centre_15", AccessMode.CENTRE_15),
    ],
)
def test_access_modes_case_insensitive(test_pki, code, mode) -> None:
    assert read(test_pki, access_mode=code).principal.access_mode is mode


def test_unknown_access_mode_is_refused(test_pki, tmp_path) -> None:
    assert refused(test_pki, access_mode="urgence").check == "access_mode"
    assert refused(test_pki, access_mode_system="1.2.3.4").check == "access_mode"
    # And over the whole check, signed: still refused, with the same reason.
    data = vihf_envelope(test_pki, access_mode="visite")
    with pytest.raises(SecurityFault) as caught:
        authenticator(test_pki).authenticate(soap_request(data, tmp_path), {})
    assert caught.value.check == "access_mode"
    assert "visite" in caught.value.reason


def test_specialty_is_required_for_doctors_only(test_pki) -> None:
    doctor_alone = (("10", "1.2.250.1.71.1.2.7", "Médecin"),)
    assert "specialty" in refused(test_pki, roles=doctor_alone).reason
    nurse = read(test_pki, professional="infirmier").principal
    assert nurse.specialty is None and nurse.profession.code == "60"


def test_role_values_must_be_coded(test_pki) -> None:
    assert "codeSystem" in refused(test_pki, roles=(("10", "not-an-oid", "x"),)).reason


@pytest.mark.parametrize(
    "value", ["not a cx", "123^^^&1.2.250&ISX", "^^^&1.2.250.1.213.1.4.10&ISO", "1^2^^&1.2&ISO"]
)
def test_malformed_patient_is_refused_without_echoing_it(test_pki, value) -> None:
    fault = refused(test_pki, extra={names.RESOURCE_ID: value})
    assert names.RESOURCE_ID in fault.reason
    assert value not in fault.reason


def test_patient_with_and_without_identifier_type(test_pki) -> None:
    patient = new_patient_id()
    assert read(test_pki, extra={names.RESOURCE_ID: patient}).principal.patient.canonical == (
        patient
    )
    with_nh = read(test_pki, extra={names.RESOURCE_ID: patient + "^NH"}).principal
    assert with_nh.patient.canonical == patient


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        (names.RESOURCE_URN, "urn:other"),
        (names.ACTIVITY_SECTOR, "SA07"),
        (names.ACTIVITY_SECTOR, "SA07^not-an-oid"),
        (names.VIHF_VERSION, "2.0"),
        (names.STRUCTURE_ID, "x" * 600),
        (names.LPS_NAME, "bad\nname"),
    ],
)
def test_malformed_values(test_pki, attribute, value) -> None:
    assert refused(test_pki, extra={attribute: value}).check == "attributes"


def test_vihf_version_4_is_accepted(test_pki) -> None:
    assert read(test_pki, vihf_version="4.0").principal.vihf_version == "4.0"


def test_duplicate_and_multi_valued_attributes(test_pki) -> None:
    assertion = build_assertion(test_pki.vihf_claims(new_patient_id()))
    statement = assertion.find(f"{{{names.SAML2}}}AttributeStatement")
    assert statement is not None
    resource = next(a for a in statement if a.get("Name") == names.RESOURCE_ID)
    value = resource[0]
    doubled = etree.fromstring(etree.tostring(assertion))
    statement2 = doubled.find(f"{{{names.SAML2}}}AttributeStatement")
    statement2.append(etree.fromstring(etree.tostring(resource)))
    with pytest.raises(SecurityFault, match="more than once"):
        read_vihf(doubled)
    resource.append(etree.fromstring(etree.tostring(value)))
    with pytest.raises(SecurityFault, match="exactly one value"):
        read_vihf(assertion)


def test_assertion_shape(test_pki) -> None:
    assertion = build_assertion(test_pki.vihf_claims(new_patient_id()))
    assertion.set("Version", "1.1")
    with pytest.raises(SecurityFault, match="Version"):
        read_vihf(assertion)
    assertion = build_assertion(test_pki.vihf_claims(new_patient_id()))
    subject = assertion.find(f"{{{names.SAML2}}}Subject")
    assertion.remove(subject)
    with pytest.raises(SecurityFault, match="Subject"):
        read_vihf(assertion)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2026-01-02T03:04:05Z", True),
        ("2026-01-02T03:04:05.123Z", True),
        ("2019-06-26T08:46:06.8391234Z", True),  # .NET's seven digits
        ("2026-01-02T03:04:05+01:00", True),
        ("2026-01-02T03:04:05", False),  # no time zone
        ("2026-01-02", False),
        ("2026-13-02T03:04:05Z", False),
        ("yesterday", False),
    ],
)
def test_instants(text, ok) -> None:
    if ok:
        assert parse_instant(text, "IssueInstant").tzinfo is not None
    else:
        with pytest.raises(SecurityFault):
            parse_instant(text, "IssueInstant")
