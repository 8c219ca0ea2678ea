"""The optional motive of an emergency access in the VIHF: the ``Mode_Acces_Raison`` attribute
(any case) or the PurposeOfUse's originalText; never required, never the displayName."""

from __future__ import annotations

import pytest
from lxml import etree

from dmp_xds.client.vihf import VihfClaims, build_assertion
from dmp_xds.namespaces import HL7V3, SAML2
from dmp_xds.security import vihf as names
from dmp_xds.security.faults import INVALID_SECURITY, SecurityFault
from dmp_xds.security.principal import AccessMode
from dmp_xds.security.vihf import read_vihf
from tests.fixtures.metadata import new_patient_id

MOTIVE = "Patiente inconsciente, admise aux urgences"


def claims(**changes: object) -> VihfClaims:
    return VihfClaims(patient_id=new_patient_id(), access_mode="bris_de_glace").with_(**changes)


def motive_of(assertion: etree._Element) -> str | None:
    return read_vihf(assertion).principal.access_motive


@pytest.mark.parametrize("where", ["attribute", "original_text"])
def test_motive_read_from_either_place(where: str) -> None:
    principal = read_vihf(
        build_assertion(claims(access_motive=MOTIVE, access_motive_in=where))
    ).principal
    assert principal.access_motive == MOTIVE
    assert principal.access_mode is AccessMode.BRIS_DE_GLACE and principal.emergency


def test_no_motive_is_fine_and_the_display_name_is_not_one() -> None:
    principal = read_vihf(build_assertion(claims())).principal
    assert principal.emergency and principal.access_motive is None
    normal = read_vihf(build_assertion(claims(access_mode="normal"))).principal
    assert not normal.emergency and normal.access_motive is None


@pytest.mark.parametrize("name", ["mode_acces_raison", "MODE_ACCES_RAISON", "Mode_Acces_Raison"])
def test_attribute_name_in_any_case(name: str) -> None:
    assert motive_of(build_assertion(claims(extra={name: MOTIVE}))) == MOTIVE


def test_whitespace_runs_become_one_space() -> None:
    text = "  urgence vitale\n\tpatient   inconscient  "
    assert motive_of(build_assertion(claims(access_motive=text))) == (
        "urgence vitale patient inconscient"
    )
    assert motive_of(build_assertion(claims(access_motive="   "))) is None


def test_the_attribute_wins_over_the_original_text() -> None:
    assertion = build_assertion(claims(access_motive="from original text", access_motive_in="x"))
    purpose = assertion.find(f".//{{{HL7V3}}}PurposeOfUse")
    etree.SubElement(purpose, f"{{{HL7V3}}}originalText").text = "from original text"
    statement = assertion.find(f"{{{SAML2}}}AttributeStatement")
    attribute = etree.SubElement(statement, f"{{{SAML2}}}Attribute", Name=names.ACCESS_MOTIVE)
    etree.SubElement(attribute, f"{{{SAML2}}}AttributeValue").text = "from the attribute"
    assert motive_of(assertion) == "from the attribute"


def refused(assertion: etree._Element) -> SecurityFault:
    with pytest.raises(SecurityFault) as caught:
        read_vihf(assertion)
    assert caught.value.subcode == INVALID_SECURITY
    return caught.value


def test_too_long_or_twice_is_refused() -> None:
    fault = refused(build_assertion(claims(access_motive="x" * 600)))
    assert names.ACCESS_MOTIVE in fault.reason
    # Two spellings of the same attribute: refused, not resolved.
    fault = refused(
        build_assertion(claims(access_motive=MOTIVE, extra={"MODE_ACCES_RAISON": "other"}))
    )
    assert "more than once" in fault.reason


def test_original_text_must_be_text() -> None:
    assertion = build_assertion(claims(access_motive=MOTIVE, access_motive_in="original_text"))
    original = assertion.find(f".//{{{HL7V3}}}originalText")
    etree.SubElement(original, f"{{{HL7V3}}}reference", value="#x")
    assert "originalText" in refused(assertion).reason
