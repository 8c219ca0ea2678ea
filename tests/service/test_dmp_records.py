"""The DMP's own LPS services against the real server and PostgreSQL: each request is built
after the national DMP's example (TD0.2, TD1.1, TD1.3a/b, TD1.4, TD1.2, TD0.3, TD1.6, TD0.4,
TD0.5) with our test identities, sent with a signed VIHF, and its answer is checked against
the shape of the national example answer (root element, acknowledgement, key elements)."""

from __future__ import annotations

import random
import string
from collections.abc import Iterator

import pytest
import requests
from lxml import etree
from sqlalchemy import Engine, text

from dmp_xds.client.transport import SoapClient
from dmp_xds.registry.register import patient_key
from dmp_xds.security.pki import TestPki
from tests.conftest import Server
from tests.fixtures import dmp_messages as m
from tests.fixtures.metadata import new_patient_id
from tests.fixtures.records import record_rows

WSA = "http://www.w3.org/2005/08/addressing"


@pytest.fixture(scope="module")
def dmp(server: Server, test_pki: TestPki) -> m.DmpCaller:
    # As the named professional (AIR): the rights matrix gives an institution certificate
    # (plain INDIRECTE) neither TD0.3 nor TD1.6 (tests/service/test_dmp_rights.py).
    return m.DmpCaller(
        SoapClient(server.url), test_pki, {"authentication_mode": "INDIRECTE_RENFORCEE"}
    )


def _unique_name() -> str:
    return "T" + "".join(random.choice(string.ascii_uppercase) for _ in range(10))


@pytest.fixture
def person() -> m.Person:
    """A patient who has no record yet, with a family name no other test uses."""
    return m.person_of(new_patient_id(), family=_unique_name())


@pytest.fixture
def created(dmp: m.DmpCaller, person: m.Person) -> m.Person:
    reply = dmp.call(m.GDP_PATH, m.ADD, m.create(person), person.cx)
    assert m.one(reply.payload, "//hl7:acknowledgement/@typeCode") == "AA"
    return person


def _ack(payload: etree._Element) -> str:
    return m.one(payload, "//hl7:acknowledgement/@typeCode")


def _detail(payload: etree._Element) -> str:
    return m.one(payload, "//hl7:acknowledgement/hl7:acknowledgementDetail/hl7:code/@code")


def _status(payload: etree._Element) -> str:
    return m.one(payload, "*[local-name()='output']/*[local-name()='status']/text()")


# --- GestionDossierPatientPartage ----------------------------------------------------------------
def test_existence_of_unknown_patient_is_not_found(dmp: m.DmpCaller, person: m.Person) -> None:
    reply = dmp.call(m.GDP_PATH, m.GET, m.get_demographics(person), person.cx)
    assert reply.fault is None and reply.http_status == 200
    assert reply.action == "urn:hl7-org:v3:PRPA_IN201308UV02"
    p = reply.payload
    assert p.tag == f"{{{m.HL7}}}PRPA_IN201308UV02"
    assert _ack(p) == "AA"
    assert m.one(p, "hl7:controlActProcess/hl7:reasonCode/@code") == "TEST_EXST"
    assert m.one(p, "hl7:controlActProcess/hl7:queryAck/hl7:queryResponseCode/@code") == "NF"
    assert not m.xp(p, "//hl7:registrationEvent")


def test_create_with_consent_then_exists(
    dmp: m.DmpCaller, person: m.Person, engine: Engine
) -> None:
    reply = dmp.call(
        m.GDP_PATH,
        m.ADD,
        m.create(person, extra_ids=(("1.2.250.1.213.1.4.2", "1234567890123456789012"),)),
        person.cx,
    )
    assert reply.action == "urn:hl7-org:v3:PRPA_IN201311ResponseUV02"
    assert reply.payload.tag == f"{{{m.GDP}}}PRPA_IN201311UV02_Response"
    accepted = m.one(reply.payload, "hl7:PRPA_IN201312UV02")
    assert _ack(accepted) == "AA"
    assert m.one(accepted, "//hl7:patient/hl7:statusCode/@code") == "active"
    # The patient id is now known to the XDS registry.
    with engine.connect() as conn:
        assert patient_key(conn, person.cx) is not None

    reply = dmp.call(m.GDP_PATH, m.GET, m.get_demographics(person), person.cx)
    p = reply.payload
    assert _ack(p) == "AA"
    assert m.one(p, "//hl7:queryAck/hl7:queryResponseCode/@code") == "OK"
    lines = {
        m.one(a, "hl7:keyWordText/@code"): a.find(f"{{{m.HL7}}}value")
        for a in m.xp(p, "hl7:attentionLine")
    }
    assert lines["AUTORISATION"].get("code") == "VALIDE"  # the creator is authorised
    assert lines["STATUT_MT"].get("value") == "false"
    patient = m.one(p, "//hl7:registrationEvent/hl7:subject1/hl7:patient")
    ids = [(i.get("root"), i.get("extension")) for i in m.xp(patient, "hl7:id")]
    assert ids == [
        ("1.2.250.1.213.1.4.2", "1234567890123456789012"),
        (person.authority, person.matricule),
    ]
    assert m.one(patient, "hl7:statusCode/@code") == "active"
    assert m.one(patient, "hl7:patientPerson/hl7:name/hl7:family/text()") == person.family
    assert m.one(patient, "hl7:patientPerson/hl7:birthTime/@value") == person.birth_date
    codes = m.xp(patient, "hl7:subjectOf/hl7:administrativeObservation/hl7:code/@code")
    assert codes == ["COMPTE_INTERNET_OUVERT", "RATTACHEMENT_ENS"]
    assert m.one(p, "//hl7:custodian/hl7:assignedEntity/hl7:id/@root") == "1.2.250.1.213.4.1.1.1"


def test_create_without_consent_is_refused(
    dmp: m.DmpCaller, person: m.Person, engine: Engine
) -> None:
    reply = dmp.call(m.GDP_PATH, m.ADD, m.create(person, consent=False), person.cx)
    refused = m.one(reply.payload, "hl7:PRPA_IN201313UV02")
    assert _ack(refused) == "AE"
    assert _detail(refused) == "DMPConsentMissing"
    assert record_rows(engine, person.cx) == ()


def test_second_creation_is_dmp_found(dmp: m.DmpCaller, created: m.Person, engine: Engine) -> None:
    before = record_rows(engine, created.cx)
    reply = dmp.call(m.GDP_PATH, m.ADD, m.create(created), created.cx)
    assert _detail(m.one(reply.payload, "hl7:PRPA_IN201313UV02")) == "DMPFound"
    assert record_rows(engine, created.cx) == before


def test_consultation_returns_the_administrative_data(dmp: m.DmpCaller, created: m.Person) -> None:
    reply = dmp.call(m.GDP_PATH, m.GET, m.get_demographics(created, "CNSLT_DATA"), created.cx)
    p = reply.payload
    assert p.tag == f"{{{m.HL7}}}PRPA_IN201308UV02" and _ack(p) == "AA"
    assert m.one(p, "hl7:controlActProcess/hl7:reasonCode/@code") == "CNSLT_DATA"
    assert not m.xp(p, "hl7:attentionLine")
    person = m.one(p, "//hl7:patient/hl7:patientPerson")
    assert m.xp(person, "hl7:telecom/@value") == ["tel:0102030405", "mailto:alice@example.org"]
    assert m.one(person, "hl7:administrativeGenderCode/@code") == "F"
    assert m.one(person, "hl7:deceasedInd/@value") == "false"
    assert m.one(person, "hl7:addr/hl7:postalCode/text()") == created.postal_code
    relation = m.one(person, "hl7:personalRelationship")
    assert m.one(relation, "hl7:code/@code") == "FTH"
    assert m.one(relation, "hl7:relationshipHolder1/hl7:name/hl7:family/text()") == "REPRESENTANT"
    observations = {
        m.one(o, "hl7:code/@code"): m.one(o, "hl7:value/@value")
        for o in m.xp(p, "//hl7:patient/hl7:subjectOf/hl7:administrativeObservation")
    }
    assert observations == {
        "OPPOSITION_BRIS_DE_GLACE": "false",
        "OPPOSITION_ACCES_URGENCE": "false",
    }


def test_modification_changes_the_data(dmp: m.DmpCaller, created: m.Person) -> None:
    changed = m.Person(
        created.matricule, created.authority, family="NOUVEAU" + created.family, city="Lyon"
    )
    reply = dmp.call(
        m.GDP_PATH,
        m.REVISE,
        m.modify(changed, observations={"OPPOSITION_BRIS_DE_GLACE": True}),
        created.cx,
    )
    assert reply.action == "urn:hl7-org:v3:PRPA_IN201314ResponseUV02"
    assert reply.payload.tag == f"{{{m.GDP}}}PRPA_IN201314UV02_Response"
    accepted = m.one(reply.payload, "hl7:PRPA_IN201315UV02")
    assert _ack(accepted) == "AA"
    assert m.one(accepted, "//hl7:reasonCode/@code") == "MODIF_DATA"
    assert m.one(accepted, "//hl7:patient/hl7:statusCode/@code") == "active"

    reply = dmp.call(m.GDP_PATH, m.GET, m.get_demographics(created, "CNSLT_DATA"), created.cx)
    person = m.one(reply.payload, "//hl7:patient/hl7:patientPerson")
    assert m.one(person, "hl7:name/hl7:family/text()") == changed.family
    assert m.one(person, "hl7:addr/hl7:city/text()") == "Lyon"
    bris = m.one(
        reply.payload,
        "//hl7:administrativeObservation[hl7:code/@code='OPPOSITION_BRIS_DE_GLACE']/hl7:value/@value",
    )
    assert bris == "true"


def test_close_then_reactivate(dmp: m.DmpCaller, created: m.Person, engine: Engine) -> None:
    reply = dmp.call(m.GDP_PATH, m.REVISE, m.close(created), created.cx)
    accepted = m.one(reply.payload, "hl7:PRPA_IN201315UV02")
    assert _ack(accepted) == "AA"
    assert m.one(accepted, "//hl7:reasonCode/@code") == "FERM"
    assert m.one(accepted, "//hl7:patient/hl7:statusCode/@code") == "terminated"
    with engine.connect() as conn:
        reason = conn.execute(
            text(
                "SELECT closing_reason FROM dmp_record r JOIN patient p USING (patient_key)"
                " WHERE p.patient_id = :p"
            ),
            {"p": created.cx},
        ).scalar_one()
    assert reason == "FERMETURE_DEMANDE_PATIENT"

    reply = dmp.call(m.GDP_PATH, m.GET, m.get_demographics(created), created.cx)
    assert m.one(reply.payload, "//hl7:queryResponseCode/@code") == "OK"
    assert m.one(reply.payload, "//hl7:patient/hl7:statusCode/@code") == "terminated"

    # A closed record can be neither modified nor closed again, nor get authorisations.
    before = record_rows(engine, created.cx)
    for payload in (m.modify(created), m.close(created)):
        reply = dmp.call(m.GDP_PATH, m.REVISE, payload, created.cx)
        refused = m.one(reply.payload, "hl7:PRPA_IN201316UV02")
        assert _ack(refused) == "AE" and _detail(refused) == "DMPClosed"
    reply = dmp.call(m.HAB_PATH, m.SET_AUTH, m.set_authorization("AJOUT"), created.cx, "infirmier")
    assert _status(reply.payload) == "DMPClosed"
    # Reactivation needs the patient's consent.
    reply = dmp.call(m.GDP_PATH, m.REVISE, m.reactivate(created, consent=False), created.cx)
    assert _detail(reply.payload) == "DMPConsentMissing"
    assert record_rows(engine, created.cx) == before

    reply = dmp.call(m.GDP_PATH, m.REVISE, m.reactivate(created), created.cx)
    accepted = m.one(reply.payload, "hl7:PRPA_IN201315UV02")
    assert m.one(accepted, "//hl7:reasonCode/@code") == "REAC"
    assert m.one(accepted, "//hl7:patient/hl7:statusCode/@code") == "active"
    reply = dmp.call(m.GDP_PATH, m.REVISE, m.reactivate(created), created.cx)
    assert _detail(m.one(reply.payload, "hl7:PRPA_IN201316UV02")) == "DMPFound"


def test_revising_an_unknown_record_is_not_found(dmp: m.DmpCaller, person: m.Person) -> None:
    reply = dmp.call(m.GDP_PATH, m.REVISE, m.modify(person), person.cx)
    assert _detail(m.one(reply.payload, "hl7:PRPA_IN201316UV02")) == "DMPNotFound"


def test_writes_are_audited_with_their_objects(
    dmp: m.DmpCaller, created: m.Person, engine: Engine
) -> None:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT transaction, outcome, objects FROM audit_event"
                " WHERE patient_id = :p ORDER BY event_id"
            ),
            {"p": created.cx},
        ).all()
    assert rows[-1].outcome == "success"
    assert rows[-1].objects == ["record", "authorisation:899900000011"]
    assert rows[-1].transaction == "DMP-TD1.1"


# --- Habilitations -------------------------------------------------------------------------------
def test_authorise_block_unblock_and_list(dmp: m.DmpCaller, created: m.Person) -> None:
    nurse = "899900000029"

    def set_auth(professional: str, *args: object) -> etree._Element:
        reply = dmp.call(
            m.HAB_PATH, m.SET_AUTH, m.set_authorization(*args), created.cx, professional
        )
        assert reply.fault is None
        assert reply.payload.tag == f"{{{m.HAB}}}setAuthorizationResponse"
        assert reply.action == m.SET_AUTH + "Response"
        return reply.payload

    def listed(mode: str = "TOUTE") -> dict[str, etree._Element]:
        reply = dmp.call(m.HAB_PATH, m.LIST_AUTH, m.list_authorizations(mode), created.cx)
        assert reply.payload.tag == f"{{{m.HAB}}}listAuthorizationByPatientResponse"
        assert _status(reply.payload) == "DMPOk"
        return {
            m.one(e, "hab:nationalId/text()"): e
            for e in m.xp(reply.payload, "hab:output/hab:listOfAuthorizationByPatient")
        }

    assert _status(set_auth("infirmier", "AJOUT")) == "DMPOk"
    again = set_auth("infirmier", "AJOUT")
    assert _status(again) == "DMPOk" and m.xp(again, "hab:output/hab:context/text()")
    entries = listed()
    assert set(entries) == {"899900000011", nurse}
    doctor = entries["899900000011"]
    assert m.one(doctor, "hab:nationalIdType/text()") == "1.2.250.1.71.4.2.1"
    assert m.one(doctor, "hab:codeSpeciality/text()") == "G15_10/SM26"
    assert m.one(doctor, "hab:mode/text()") == "ACTIVE"
    assert m.one(doctor, "hab:lastName/text()") == "MEDECIN"
    assert m.xp(doctor, "hab:startOfAuthorization/text()")

    # Only a médecin can be médecin traitant; the doctor becomes it.
    assert _status(set_auth("infirmier", "AJOUT", "MEDECIN_TRAITANT")) == (
        "DMPAccessDeniedByRightsService"
    )
    assert _status(set_auth("medecin", "AJOUT", "MEDECIN_TRAITANT")) == "DMPOk"
    assert m.xp(listed()["899900000011"], "hab:specificRight/text()") == ["MEDECIN_TRAITANT"]
    reply = dmp.call(m.GDP_PATH, m.GET, m.get_demographics(created), created.cx)
    assert (
        m.one(
            reply.payload, "//hl7:attentionLine[hl7:keyWordText/@code='STATUT_MT']/hl7:value/@value"
        )
        == "true"
    )

    # The médecin traitant blocks the nurse: blocked, refused, seen as INTERDITE.
    target = (nurse, "1.2.250.1.71.4.2.1")
    assert _status(set_auth("infirmier", "BLOCAGE", None, ("899900000037", target[1]))) == (
        "DMPAccessDeniedByRightsService"
    )
    assert _status(set_auth("medecin", "BLOCAGE", None, target)) == "DMPOk"
    assert m.one(listed("INTERDITE")[nurse], "hab:mode/text()") == "INTERDITE"
    assert nurse not in listed("ACTIVE")
    assert _status(set_auth("infirmier", "AJOUT")) == "DMPAccessDeniedByRightsService"
    reply = dmp.call(m.GDP_PATH, m.GET, m.get_demographics(created), created.cx, "infirmier")
    assert (
        m.one(
            reply.payload,
            "//hl7:attentionLine[hl7:keyWordText/@code='AUTORISATION']/hl7:value/@code",
        )
        == "INTERDITE"
    )
    # Unblocked: neither authorised nor blocked; the nurse can authorise herself again.
    assert _status(set_auth("medecin", "DEBLOCAGE", None, target)) == "DMPOk"
    assert nurse not in listed()
    assert _status(set_auth("infirmier", "AJOUT")) == "DMPOk"
    assert _status(set_auth("infirmier", "SUPPRESSION")) == "DMPOk"
    assert nurse not in listed()
    # A structure can be blocked too.
    structure = ("499900000000001", "1.2.250.1.71.4.2.2")
    assert _status(set_auth("medecin", "BLOCAGE", None, structure)) == "DMPOk"
    assert m.one(listed()[structure[0]], "hab:nationalIdType/text()") == structure[1]


def test_bad_set_authorization_is_refused_in_the_status(
    dmp: m.DmpCaller, created: m.Person
) -> None:
    person = m.person_of(new_patient_id())  # no record
    reply = dmp.call(m.HAB_PATH, m.SET_AUTH, m.set_authorization("AUTRE"), created.cx)
    assert _status(reply.payload) == "DMPInvalidRequest"
    reply = dmp.call(m.HAB_PATH, m.SET_AUTH, m.set_authorization("AJOUT"), person.cx)
    assert _status(reply.payload) == "DMPNotFound"
    reply = dmp.call(m.HAB_PATH, m.LIST_AUTH, m.list_authorizations(), person.cx)
    assert _status(reply.payload) == "DMPNotFound"


# --- PatientsSpecific ----------------------------------------------------------------------------
def test_patient_list_of_the_calling_professional(dmp: m.DmpCaller) -> None:
    people = [m.person_of(new_patient_id(), family=_unique_name()) for _ in range(2)]
    for p in people:
        dmp.call(m.GDP_PATH, m.ADD, m.create(p), p.cx)
        reply = dmp.call(m.HAB_PATH, m.SET_AUTH, m.set_authorization("AJOUT"), p.cx, "sage-femme")
        assert _status(reply.payload) == "DMPOk"
    reply = dmp.call(m.PATIENTS_PATH, m.PATIENT_LIST, m.patient_list(), people[0].cx, "sage-femme")
    assert reply.action == m.PATIENT_LIST + "Response"
    assert reply.payload.tag == f"{{{m.PAT}}}patientListResponse"
    assert _status(reply.payload) == "DMPOk"
    items = {
        m.one(i, "pat:lastName/text()"): i
        for i in m.xp(reply.payload, "pat:output/pat:patientlistData")
    }
    assert {p.family for p in people} <= set(items)
    item = items[people[0].family]
    assert m.xp(item, "pat:patientIdentifier/pat:nationalId/text()") == [people[0].matricule]
    assert m.one(item, "pat:firstName/text()") == people[0].given
    assert m.one(item, "pat:dateOfBirth/text()") == people[0].birth_date
    assert m.one(item, "pat:MT/text()") == "false"
    assert m.xp(item, "pat:lastUpdateDate/text()")
    # Nothing authorised after a future date; nothing fed with documents.
    for payload in (m.patient_list("20990101"), m.patient_list(date_type="LASTDOC")):
        reply = dmp.call(m.PATIENTS_PATH, m.PATIENT_LIST, payload, people[0].cx, "sage-femme")
        names = m.xp(reply.payload, "pat:output/pat:patientlistData/pat:lastName/text()")
        assert not {p.family for p in people} & set(names)


def test_patient_list_without_action_is_dispatched_by_body(
    server: Server, test_pki: TestPki
) -> None:
    """The national binding's soapAction is empty: a SOAP 1.1 client sends no action."""
    from dmp_xds.soap.envelope import SoapVersion

    client = SoapClient(server.url, soap_version=SoapVersion.SOAP11)
    headers = test_pki.vihf_headers(new_patient_id(), "sage-femme")()
    envelope = client.envelope(m.PATIENTS_PATH, "", m.patient_list(), headers)
    for element in envelope.iter(f"{{{WSA}}}Action"):
        element.getparent().remove(element)
    reply = client.send_envelope(m.PATIENTS_PATH, "", envelope)
    assert reply.fault is None, reply.fault
    assert reply.payload.tag == f"{{{m.PAT}}}patientListResponse"


# --- PDQSupplier ---------------------------------------------------------------------------------
REGULATION = {"access_mode": "centre_15"}  # TD0.5 is a régulation transaction


def test_pdq_finds_the_record_by_traits(dmp: m.DmpCaller, created: m.Person) -> None:
    reply = dmp.call(
        m.PDQ_PATH, m.FIND, m.find(family=created.family.lower()), new_patient_id(), **REGULATION
    )
    assert reply.action == "urn:hl7-org:v3:PRPA_IN201306UV02"
    p = reply.payload
    assert p.tag == f"{{{m.HL7}}}PRPA_IN201306UV02"
    assert m.one(p, "hl7:acknowledgement/hl7:typeCode/@code") == "AA"
    assert m.one(p, "hl7:controlActProcess/hl7:code/@code") == "PRPA_TE201306UV02"
    ack = m.one(p, "hl7:controlActProcess/hl7:queryAck")
    assert m.one(ack, "hl7:queryResponseCode/@code") == "OK"
    assert m.one(ack, "hl7:resultTotalQuantity/@value") == "1"
    patient = m.one(p, "//hl7:registrationEvent/hl7:subject1/hl7:patient")
    assert m.one(patient, "hl7:id/@extension") == created.matricule
    assert m.one(patient, "hl7:subjectOf1/hl7:queryMatchObservation/hl7:value/@value") == "100"
    assert m.one(patient, "hl7:subjectOf2/hl7:administrativeObservation/hl7:code/@code") == (
        "OPPOSITION_ACCES_URGENCE"
    )
    assert m.xp(p, "hl7:controlActProcess/hl7:queryByParameter/hl7:queryId")
    # By birth date and name together; and an unknown name finds nothing.
    reply = dmp.call(
        m.PDQ_PATH,
        m.FIND,
        m.find(family=created.family, birth_date=created.birth_date),
        new_patient_id(),
        **REGULATION,
    )
    assert m.one(reply.payload, "//hl7:resultTotalQuantity/@value") == "1"
    reply = dmp.call(
        m.PDQ_PATH, m.FIND, m.find(family=_unique_name()), new_patient_id(), **REGULATION
    )
    assert m.one(reply.payload, "//hl7:queryResponseCode/@code") == "NF"


def test_pdq_without_criteria_is_refused(dmp: m.DmpCaller) -> None:
    reply = dmp.call(m.PDQ_PATH, m.FIND, m.find(), new_patient_id(), **REGULATION)
    assert m.one(reply.payload, "hl7:acknowledgement/hl7:typeCode/@code") == "AE"
    assert _detail(reply.payload) == "SYN105"
    assert m.one(reply.payload, "//hl7:queryResponseCode/@code") == "AE"


# --- bad input ---------------------------------------------------------------------------------
@pytest.fixture
def store_unchanged(engine: Engine, created: m.Person) -> Iterator[None]:
    before = record_rows(engine, created.cx)
    yield
    assert record_rows(engine, created.cx) == before


def test_message_without_id_is_refused(
    dmp: m.DmpCaller, created: m.Person, store_unchanged: None
) -> None:
    reply = dmp.call(m.GDP_PATH, m.GET, m.get_demographics(created, message_id=False), created.cx)
    assert _ack(reply.payload) == "AE" and _detail(reply.payload) == "SYN105"
    reply = dmp.call(m.GDP_PATH, m.REVISE, m.modify(created, message_id=False), created.cx)
    assert _detail(m.one(reply.payload, "hl7:PRPA_IN201316UV02")) == "SYN105"


def test_message_without_patient_ids_is_refused(
    dmp: m.DmpCaller, created: m.Person, store_unchanged: None, engine: Engine
) -> None:
    person = m.person_of(new_patient_id())  # no record
    reply = dmp.call(m.GDP_PATH, m.GET, m.get_demographics(created, with_patient=False), created.cx)
    assert _ack(reply.payload) == "AE" and _detail(reply.payload) == "SYN105"
    assert m.one(reply.payload, "//hl7:queryResponseCode/@code") == "AE"
    reply = dmp.call(m.GDP_PATH, m.REVISE, m.modify(created, with_ids=False), created.cx)
    assert _detail(m.one(reply.payload, "hl7:PRPA_IN201316UV02")) == "SYN105"
    reply = dmp.call(m.GDP_PATH, m.ADD, m.create(person, with_ids=False), person.cx)
    assert _detail(m.one(reply.payload, "hl7:PRPA_IN201313UV02")) == "SYN105"
    reply = dmp.call(m.GDP_PATH, m.ADD, m.create(person, reason=None), person.cx)
    assert _detail(m.one(reply.payload, "hl7:PRPA_IN201313UV02")) == "SYN105"
    assert record_rows(engine, person.cx) == ()


def test_patient_other_than_the_vihf_is_refused(
    dmp: m.DmpCaller, created: m.Person, store_unchanged: None, engine: Engine
) -> None:
    person = m.person_of(new_patient_id())  # no record
    other = new_patient_id()
    reply = dmp.call(m.GDP_PATH, m.GET, m.get_demographics(created, "CNSLT_DATA"), other)
    assert _ack(reply.payload) == "AE"
    assert _detail(reply.payload) == "XDSPatientIdDoesNotMatch"
    assert not m.xp(reply.payload, "//hl7:patientPerson")
    for payload in (m.modify(created), m.close(created)):
        reply = dmp.call(m.GDP_PATH, m.REVISE, payload, other)
        assert _detail(m.one(reply.payload, "hl7:PRPA_IN201316UV02")) == "XDSPatientIdDoesNotMatch"
    reply = dmp.call(m.GDP_PATH, m.ADD, m.create(person), other)
    assert _detail(m.one(reply.payload, "hl7:PRPA_IN201313UV02")) == "XDSPatientIdDoesNotMatch"
    assert record_rows(engine, person.cx) == ()


def test_unknown_action_is_a_fault(
    dmp: m.DmpCaller, created: m.Person, store_unchanged: None
) -> None:
    reply = dmp.call(m.GDP_PATH, "urn:hl7-org:v3:PRPA_IN201399UV02", m.modify(created), created.cx)
    assert reply.fault is not None
    assert reply.fault.subcode == f"{{{WSA}}}ActionNotSupported"
    # An XDS action is not a DMP one either.
    reply = dmp.call(m.HAB_PATH, m.REVISE, m.modify(created), created.cx)
    assert reply.fault is not None and reply.fault.code == "Sender"


# --- WSDLs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "soap_actions"),
    [
        (
            m.GDP_PATH,
            {
                "urn:hl7-org:v3:PRPA_IN201307UV02",
                "urn:hl7-org:v3:PRPA_IN201311UV02",
                "urn:hl7-org:v3:PRPA_IN201314UV02",
            },
        ),
        (
            m.HAB_PATH,
            {"urn:hl7-org:v3:setAuthorization", "urn:hl7-org:v3:listAuthorizationByPatient"},
        ),
        (m.PATIENTS_PATH, {""}),
        (m.PDQ_PATH, {"urn:hl7-org:v3:PRPA_IN201305UV02"}),
    ],
)
def test_wsdl_is_served_with_the_national_operations(
    server: Server, path: str, soap_actions: set[str]
) -> None:
    response = requests.get(f"{server.url}{path}?wsdl", timeout=10)
    assert response.status_code == 200
    wsdl = etree.fromstring(response.content)
    soap12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
    assert {o.get("soapAction") for o in wsdl.iter(f"{{{soap12}}}operation")} == soap_actions
    assert [a.get("location") for a in wsdl.iter(f"{{{soap12}}}address")] == [server.url + path]


def test_zeep_loads_the_dmp_wsdls(server: Server) -> None:
    zeep = pytest.importorskip("zeep")
    for path in (m.GDP_PATH, m.HAB_PATH, m.PATIENTS_PATH, m.PDQ_PATH):
        client = zeep.Client(f"{server.url}{path}?wsdl")
        assert list(client.wsdl.services.values())
