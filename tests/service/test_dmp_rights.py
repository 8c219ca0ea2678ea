"""Who may call which of the DMP's own LPS services, against the real server: the functional
rights matrix (PDT-INF-526) and its footnotes on TD0.2 ... TD1.6.

Each refusal must come in the service's own error shape (HL7v3: acknowledgement AE with the
detail code; DMP-specific services: ``output/status``), never as a SOAP fault, name its
reason, leave the database as it was and be audited as a failure with its code."""

from __future__ import annotations

import json
import random
import string
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import Engine, text

from dmp_xds.client.transport import SoapClient, SoapReply
from dmp_xds.security.pki import TestPki
from tests.conftest import Server
from tests.fixtures import dmp_messages as m
from tests.fixtures.metadata import new_patient_id
from tests.fixtures.records import record_rows

DENIED = "DMPAccessDeniedByRightsService"
AIR = {"authentication_mode": "INDIRECTE_RENFORCEE"}  # acts as the named professional
ES = {"authentication_mode": "INDIRECTE"}  # acts as the institution's certificate
CPE_ID = "899700000045"
# A CPE card: establishment staff, no TRE_G15 profession.
CPE = {
    **AIR,
    "name_id": CPE_ID,
    "subject_name": "SECRETAIRE ANNE",
    "roles": (("SECRETARIAT_MEDICAL", "1.2.250.1.213.1.1.4.6", "Secrétariat médical"),),
}
NURSE = "899900000029"
# The patient, through the test PKI's patient portal (plain indirect, role PAT).
PATIENT = {"professional": "patient", **ES}


@pytest.fixture(scope="module")
def dmp(server: Server, test_pki: TestPki) -> m.DmpCaller:
    return m.DmpCaller(SoapClient(server.url), test_pki, dict(AIR))


def _unique_name() -> str:
    return "R" + "".join(random.choice(string.ascii_uppercase) for _ in range(10))


@pytest.fixture
def created(dmp: m.DmpCaller) -> m.Person:
    """A patient whose record the physician ``medecin`` opened (and so is authorised on)."""
    person = m.person_of(new_patient_id(), family=_unique_name())
    reply = dmp.call(m.GDP_PATH, m.ADD, m.create(person), person.cx)
    assert m.one(reply.payload, "//hl7:acknowledgement/@typeCode") == "AA"
    return person


def _last_event(engine: Engine, patient_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT transaction, outcome, error_codes, actor_id FROM audit_event"
                " WHERE patient_id = :p ORDER BY event_id DESC LIMIT 1"
            ),
            {"p": patient_id},
        ).one()


def _status(reply: SoapReply) -> tuple[str, str]:
    """(status, context) of a DMP-specific answer; never a fault."""
    assert reply.fault is None and reply.http_status == 200
    output = m.one(reply.payload, "*[local-name()='output']")
    context = m.xp(output, "*[local-name()='context']/text()")
    return m.one(output, "*[local-name()='status']/text()"), context[0] if context else ""


def _ack(reply: SoapReply) -> tuple[str, str | None, str | None]:
    """(typeCode, detail code, detail text) of an HL7v3 answer; never a fault."""
    assert reply.fault is None and reply.http_status == 200
    ack = m.xp(reply.payload, "//hl7:acknowledgement")[0]
    type_code = ack.get("typeCode") or m.one(ack, "hl7:typeCode/@code")
    codes = m.xp(ack, "hl7:acknowledgementDetail/hl7:code/@code")
    texts = m.xp(ack, "hl7:acknowledgementDetail/hl7:text/text()")
    return type_code, codes[0] if codes else None, texts[0] if texts else None


def _assert_denied_and_audited(engine: Engine, patient_id: str, transaction: str) -> None:
    event = _last_event(engine, patient_id)
    assert event.transaction == transaction
    assert event.outcome == "failure"
    assert event.error_codes == [DENIED]


# --- TD0.3 setAuthorization ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("action", "role", "vihf", "reason"),
    [
        ("AJOUT", None, {"professional": "infirmier", **ES}, "es_normal"),
        ("AJOUT", None, {"professional": "infirmier", "access_mode": "bris_de_glace"}, "glace"),
        ("AJOUT", None, {"professional": "infirmier", "access_mode": "centre_15"}, "regulation"),
        ("AJOUT", "MEDECIN_TRAITANT", {"professional": "infirmier"}, "only a médecin"),
        ("AJOUT", "MEDECIN_TRAITANT", CPE, "only a médecin"),
        ("SUPPRESSION", None, ES, "es_normal"),
        ("SUPPRESSION", None, {"access_mode": "bris_de_glace"}, "medecin_bris_de_glace"),
        ("SUPPRESSION", "MEDECIN_TRAITANT", {}, "medecin_normal"),  # not the MT
        ("BLOCAGE", None, {}, "blocks or unblocks"),
    ],
)
def test_set_authorization_refusals(
    dmp: m.DmpCaller,
    created: m.Person,
    engine: Engine,
    action: str,
    role: str | None,
    vihf: dict[str, Any],
    reason: str,
) -> None:
    before = record_rows(engine, created.cx)
    target = (NURSE, "1.2.250.1.71.4.2.1") if action == "BLOCAGE" else None
    reply = dmp.call(
        m.HAB_PATH, m.SET_AUTH, m.set_authorization(action, role, target), created.cx, **vihf
    )
    assert reply.payload.tag == f"{{{m.HAB}}}setAuthorizationResponse"
    status, context = _status(reply)
    assert status == DENIED
    assert reason in context
    assert record_rows(engine, created.cx) == before
    _assert_denied_and_audited(engine, created.cx, "DMP-TD0.3")


def test_cpe_declares_itself_authorised_but_cannot_remove_it(
    dmp: m.DmpCaller, created: m.Person, engine: Engine
) -> None:
    """Note 1: a CPE may "se déclarer autorisé"; "supprimer son autorisation" is not its."""
    reply = dmp.call(m.HAB_PATH, m.SET_AUTH, m.set_authorization("AJOUT"), created.cx, **CPE)
    assert _status(reply)[0] == "DMPOk"
    listed = dmp.call(m.HAB_PATH, m.LIST_AUTH, m.list_authorizations(), created.cx)
    entry = m.one(listed.payload, f"//hab:listOfAuthorizationByPatient[hab:nationalId='{CPE_ID}']")
    assert m.one(entry, "hab:codeSpeciality/text()") == "SECRETARIAT_MEDICAL"
    before = record_rows(engine, created.cx)
    reply = dmp.call(m.HAB_PATH, m.SET_AUTH, m.set_authorization("SUPPRESSION"), created.cx, **CPE)
    assert _status(reply)[0] == DENIED
    assert record_rows(engine, created.cx) == before


def test_medecin_traitant_role_and_blocking_belong_to_the_mt(
    dmp: m.DmpCaller, created: m.Person, engine: Engine
) -> None:
    def set_auth(*args: Any, **vihf: Any) -> str:
        reply = dmp.call(m.HAB_PATH, m.SET_AUTH, m.set_authorization(*args), created.cx, **vihf)
        return _status(reply)[0]

    nurse = (NURSE, "1.2.250.1.71.4.2.1")
    assert set_auth("AJOUT", "MEDECIN_TRAITANT") == "DMPOk"
    # The MT in break-glass mode is no MT for blocking; in normal mode it is.
    assert set_auth("BLOCAGE", None, nurse, access_mode="bris_de_glace") == DENIED
    # Nor through the institution's certificate (plain indirect: the ES column).
    assert set_auth("BLOCAGE", None, nurse, **ES) == DENIED
    assert set_auth("BLOCAGE", None, nurse) == "DMPOk"
    assert set_auth("DEBLOCAGE", None, nurse) == "DMPOk"
    # "Se supprimer MT": the MT keeps its authorisation, loses the role; then it is refused.
    assert set_auth("SUPPRESSION", "MEDECIN_TRAITANT") == "DMPOk"
    assert set_auth("SUPPRESSION", "MEDECIN_TRAITANT") == DENIED
    assert set_auth("BLOCAGE", None, nurse) == DENIED
    reply = dmp.call(m.HAB_PATH, m.LIST_AUTH, m.list_authorizations("ACTIVE"), created.cx)
    assert m.xp(reply.payload, "//hab:specificRight") == []


def test_blocked_professional_is_refused_everything_but_td02(
    dmp: m.DmpCaller, created: m.Person, engine: Engine
) -> None:
    nurse = (NURSE, "1.2.250.1.71.4.2.1")
    for args in (("AJOUT", "MEDECIN_TRAITANT"), ("BLOCAGE", None, nurse)):
        reply = dmp.call(m.HAB_PATH, m.SET_AUTH, m.set_authorization(*args), created.cx)
        assert _status(reply)[0] == "DMPOk"
    before = record_rows(engine, created.cx)

    # TD0.2 tells the nurse she is blocked.
    reply = dmp.call(
        m.GDP_PATH, m.GET, m.get_demographics(created), created.cx, professional="infirmier"
    )
    assert _ack(reply)[0] == "AA"
    assert m.one(
        reply.payload, "//hl7:attentionLine[hl7:keyWordText/@code='AUTORISATION']/hl7:value/@code"
    ) == ("INTERDITE")
    # TD1.3a, TD1.6, TD1.3b, TD1.4, TD0.3: refused, in each service's shape.
    reply = dmp.call(
        m.GDP_PATH,
        m.GET,
        m.get_demographics(created, "CNSLT_DATA"),
        created.cx,
        professional="infirmier",
    )
    type_code, code, reason = _ack(reply)
    assert (type_code, code) == ("AE", DENIED) and "blocked" in (reason or "")
    assert m.one(reply.payload, "//hl7:queryAck/hl7:queryResponseCode/@code") == "AE"
    assert not m.xp(reply.payload, "//hl7:patientPerson")
    _assert_denied_and_audited(engine, created.cx, "DMP-TD0.2/TD1.3a")

    reply = dmp.call(
        m.HAB_PATH, m.LIST_AUTH, m.list_authorizations(), created.cx, professional="infirmier"
    )
    assert _status(reply)[0] == DENIED
    assert not m.xp(reply.payload, "//hab:listOfAuthorizationByPatient")
    for payload in (m.modify(created), m.close(created)):
        reply = dmp.call(m.GDP_PATH, m.REVISE, payload, created.cx, professional="infirmier")
        refused = m.one(reply.payload, "hl7:PRPA_IN201316UV02")
        assert _ack(reply)[:2] == ("AE", DENIED), m.xp(refused, "//hl7:text/text()")
    reply = dmp.call(
        m.HAB_PATH, m.SET_AUTH, m.set_authorization("AJOUT"), created.cx, professional="infirmier"
    )
    assert _status(reply)[0] == DENIED
    assert record_rows(engine, created.cx) == before


def test_the_patient_blocks_and_unblocks_a_professional(
    dmp: m.DmpCaller, created: m.Person, engine: Engine
) -> None:
    """Blocking is the patient's decision: through the patient portal they block and unblock
    a professional themself, list who is authorised or blocked (TD1.6), but declare no
    authorisation and do not close the record (refused, nothing changes, audited)."""

    def set_auth(*args: Any, **vihf: Any) -> tuple[str, str]:
        reply = dmp.call(m.HAB_PATH, m.SET_AUTH, m.set_authorization(*args), created.cx, **vihf)
        return _status(reply)

    nurse = (NURSE, "1.2.250.1.71.4.2.1")
    assert set_auth("AJOUT", professional="infirmier")[0] == "DMPOk"
    assert set_auth("BLOCAGE", None, nurse, **PATIENT)[0] == "DMPOk"
    reply = dmp.call(
        m.GDP_PATH, m.GET, m.get_demographics(created), created.cx, professional="infirmier"
    )
    assert m.one(
        reply.payload, "//hl7:attentionLine[hl7:keyWordText/@code='AUTORISATION']/hl7:value/@code"
    ) == ("INTERDITE")
    listed = dmp.call(m.HAB_PATH, m.LIST_AUTH, m.list_authorizations(), created.cx, **PATIENT)
    assert _status(listed)[0] == "DMPOk"
    entry = m.one(listed.payload, f"//hab:listOfAuthorizationByPatient[hab:nationalId='{NURSE}']")
    assert m.one(entry, "hab:mode/text()") == "INTERDITE"
    event = _last_event(engine, created.cx)
    assert (event.transaction, event.outcome, event.actor_id) == (
        "DMP-TD1.6",
        "success",
        created.matricule,
    )
    assert set_auth("DEBLOCAGE", None, nurse, **PATIENT)[0] == "DMPOk"

    before = record_rows(engine, created.cx)
    for args, reason in (
        (("AJOUT",), "not allowed to patient"),
        (("AJOUT", "MEDECIN_TRAITANT"), "not allowed to patient"),
        (("SUPPRESSION",), "not allowed to patient"),
    ):
        status, context = set_auth(*args, **PATIENT)
        assert status == DENIED and reason in context
        _assert_denied_and_audited(engine, created.cx, "DMP-TD0.3")
    reply = dmp.call(m.GDP_PATH, m.REVISE, m.close(created), created.cx, **PATIENT)
    type_code, code, reason = _ack(reply)
    assert (type_code, code) == ("AE", DENIED) and "not the patient's" in (reason or "")
    assert record_rows(engine, created.cx) == before


# --- TD1.6 listAuthorizationByPatient --------------------------------------------------------
@pytest.mark.parametrize(
    ("vihf", "allowed"),
    [
        ({}, True),
        ({"professional": "infirmier"}, True),  # a PS need not be authorised to list
        (ES, False),
        (CPE, False),
        ({"access_mode": "centre_15"}, False),
        ({"access_mode": "bris_de_glace"}, False),
    ],
)
def test_list_authorizations_by_actor(
    dmp: m.DmpCaller, created: m.Person, engine: Engine, vihf: dict[str, Any], allowed: bool
) -> None:
    reply = dmp.call(m.HAB_PATH, m.LIST_AUTH, m.list_authorizations(), created.cx, **vihf)
    status, context = _status(reply)
    if allowed:
        assert status == "DMPOk"
        assert m.xp(reply.payload, "//hab:listOfAuthorizationByPatient")
    else:
        assert status == DENIED and context
        assert not m.xp(reply.payload, "//hab:listOfAuthorizationByPatient")
        _assert_denied_and_audited(engine, created.cx, "DMP-TD1.6")


# --- TD0.2 / TD1.3a: everyone ------------------------------------------------------------------
@pytest.mark.parametrize(
    "vihf",
    [{}, ES, CPE, {"access_mode": "bris_de_glace"}, {**ES, "access_mode": "centre_15"}, PATIENT],
)
def test_existence_and_consultation_for_everyone(
    dmp: m.DmpCaller, created: m.Person, vihf: dict[str, Any]
) -> None:
    for reason in ("TEST_EXST", "CNSLT_DATA"):
        reply = dmp.call(m.GDP_PATH, m.GET, m.get_demographics(created, reason), created.cx, **vihf)
        assert _ack(reply) == ("AA", None, None)
        assert m.one(reply.payload, "//hl7:queryResponseCode/@code") == "OK"


def test_institution_certificate_has_no_break_glass_column(
    dmp: m.DmpCaller, created: m.Person
) -> None:
    reply = dmp.call(
        m.GDP_PATH,
        m.GET,
        m.get_demographics(created),
        created.cx,
        **ES,
        access_mode="bris_de_glace",
    )
    type_code, code, reason = _ack(reply)
    assert (type_code, code) == ("AE", DENIED) and "bris_de_glace" in (reason or "")


# --- TD1.1, TD1.3b, TD1.4, TD1.2: normal mode only ---------------------------------------------
@pytest.mark.parametrize("access_mode", ["bris_de_glace", "centre_15"])
def test_record_life_only_in_normal_mode(
    dmp: m.DmpCaller, created: m.Person, engine: Engine, access_mode: str
) -> None:
    fresh = m.person_of(new_patient_id(), family=_unique_name())
    reply = dmp.call(m.GDP_PATH, m.ADD, m.create(fresh), fresh.cx, access_mode=access_mode)
    m.one(reply.payload, "hl7:PRPA_IN201313UV02")
    type_code, code, reason = _ack(reply)
    assert (type_code, code) == ("AE", DENIED) and "normal access mode" in (reason or "")
    assert record_rows(engine, fresh.cx) == ()
    _assert_denied_and_audited(engine, fresh.cx, "DMP-TD1.1")

    before = record_rows(engine, created.cx)
    for payload in (m.modify(created), m.close(created)):
        reply = dmp.call(m.GDP_PATH, m.REVISE, payload, created.cx, access_mode=access_mode)
        m.one(reply.payload, "hl7:PRPA_IN201316UV02")
        assert _ack(reply)[:2] == ("AE", DENIED)
    assert record_rows(engine, created.cx) == before
    _assert_denied_and_audited(engine, created.cx, "DMP-TD1.2/TD1.3b/TD1.4")


def test_institution_certificate_manages_the_record_in_normal_mode(
    dmp: m.DmpCaller, engine: Engine
) -> None:
    """TD1.1 / TD1.4 / TD1.2 are not in the 2024 matrix: any caller in normal mode."""
    person = m.person_of(new_patient_id(), family=_unique_name())
    assert _ack(dmp.call(m.GDP_PATH, m.ADD, m.create(person), person.cx, **ES))[0] == "AA"
    assert _ack(dmp.call(m.GDP_PATH, m.REVISE, m.close(person), person.cx, **ES))[0] == "AA"
    reply = dmp.call(m.GDP_PATH, m.REVISE, m.reactivate(person), person.cx, **ES)
    assert _ack(reply)[0] == "AA"


# --- TD0.5 PDQ: régulation only ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("vihf", "allowed"),
    [
        ({"access_mode": "centre_15"}, True),
        ({"professional": "infirmier", "access_mode": "centre_15"}, True),
        ({**ES, "access_mode": "centre_15"}, True),
        ({}, False),
        (ES, False),
        ({"access_mode": "bris_de_glace"}, False),
        ({**CPE, "access_mode": "centre_15"}, False),
    ],
)
def test_patient_search_without_ins(
    dmp: m.DmpCaller, created: m.Person, engine: Engine, vihf: dict[str, Any], allowed: bool
) -> None:
    vihf_patient = new_patient_id()
    reply = dmp.call(m.PDQ_PATH, m.FIND, m.find(family=created.family), vihf_patient, **vihf)
    assert reply.payload.tag == f"{{{m.HL7}}}PRPA_IN201306UV02"
    type_code, code, reason = _ack(reply)
    if allowed:
        assert type_code == "AA"
        assert m.one(reply.payload, "//hl7:patient/hl7:id/@extension") == created.matricule
        return
    assert (type_code, code) == ("AE", DENIED) and reason
    assert m.one(reply.payload, "//hl7:queryAck/hl7:queryResponseCode/@code") == "AE"
    assert not m.xp(reply.payload, "//hl7:registrationEvent")
    _assert_denied_and_audited(engine, vihf_patient, "DMP-TD0.5")


# --- TD0.4 patientList -------------------------------------------------------------------------
def _listed(reply: SoapReply) -> set[str]:
    return set(m.xp(reply.payload, "pat:output/pat:patientlistData/pat:lastName/text()"))


def test_patient_list_refusals(dmp: m.DmpCaller, engine: Engine) -> None:
    cases: list[tuple[Any, dict[str, Any], str]] = [
        (m.patient_list(start=None), ES, "startDate"),  # note 3
        (m.patient_list(), {**ES, "access_mode": "centre_15"}, "es_regulation"),
        (m.patient_list(owner="899900000037"), {}, "only their own"),
        (m.patient_list(owner="899900000999"), CPE, "own structure"),  # note 2
    ]
    for payload, vihf, reason in cases:
        vihf_patient = new_patient_id()
        reply = dmp.call(m.PATIENTS_PATH, m.PATIENT_LIST, payload, vihf_patient, **vihf)
        assert reply.payload.tag == f"{{{m.PAT}}}patientListResponse"
        status, context = _status(reply)
        assert status == DENIED and reason in context, (reason, context)
        assert not _listed(reply)
        _assert_denied_and_audited(engine, vihf_patient, "DMP-TD0.4")


def test_patient_list_for_cpe_and_institution(dmp: m.DmpCaller) -> None:
    person = m.person_of(new_patient_id(), family=_unique_name())
    dmp.call(m.GDP_PATH, m.ADD, m.create(person), person.cx)
    reply = dmp.call(
        m.HAB_PATH, m.SET_AUTH, m.set_authorization("AJOUT"), person.cx, professional="sage-femme"
    )
    assert _status(reply)[0] == "DMPOk"
    # Note 2: the CPE of the structure lists the midwife's patients (she called from it).
    reply = dmp.call(
        m.PATIENTS_PATH, m.PATIENT_LIST, m.patient_list(owner="899900000037"), person.cx, **CPE
    )
    assert _status(reply)[0] == "DMPOk" and person.family in _listed(reply)
    # Note 3: the institution certificate lists the authorisations given since its date.
    for start, listed in (("20100101", True), ("20990101", False)):
        reply = dmp.call(
            m.PATIENTS_PATH,
            m.PATIENT_LIST,
            m.patient_list(start),
            person.cx,
            professional="sage-femme",
            **ES,
        )
        assert _status(reply)[0] == "DMPOk"
        assert (person.family in _listed(reply)) is listed


def test_refusal_reason_is_on_the_request_log_line(
    dmp: m.DmpCaller, created: m.Person, server: Server
) -> None:
    reply = dmp.call(m.HAB_PATH, m.LIST_AUTH, m.list_authorizations(), created.cx, **ES)
    assert etree.QName(reply.payload).localname == "listAuthorizationByPatientResponse"
    assert _status(reply)[0] == DENIED
    lines = [json.loads(line) for line in server.log_text().splitlines() if '"denied"' in line]
    assert any("TD1.6 is not allowed to es_normal" in line["denied"] for line in lines)
