"""Emergency accesses in the trail, and trace queries (/dmp/Traces, ``dmp-xds trail``) against
the real server: the médecin traitant reads the patient's whole trail, another professional
their own actions; institution certificates, blocked professionals and emergency modes are
refused in output/status; malformed requests are answered, not faulted; every trace call is
itself in the trail."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import urllib.parse
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from lxml import etree
from sqlalchemy import Engine, text

from dmp_xds.client.transport import SoapClient, SoapReply
from dmp_xds.client.xds import XdsClient
from dmp_xds.metadata import vocabulary as v
from dmp_xds.metadata.xsd import payload_errors
from dmp_xds.patients import authorisations as auth
from dmp_xds.security.pki import TestPki
from tests.conftest import Server
from tests.fixtures.cli import run_cli
from tests.fixtures.metadata import new_patient_id
from tests.fixtures.records import open_record, professional_actor
from tests.fixtures.trail import trail_rows

TR = "urn:dmp-xds:traces:1"
NS = {"tr": TR}
PATH = "/dmp/Traces"
ACTION = "urn:dmp-xds:traces:1:listTraces"
AIR = "INDIRECTE_RENFORCEE"
DENIED = "DMPAccessDeniedByRightsService"
INVALID = "DMPInvalidRequest"
MOTIVE = "Patiente inconsciente, admise aux urgences"


def list_traces(**fields: object) -> etree._Element:
    """A listTraces request; ``fields`` by element name (``from_`` for ``from``)."""
    root = etree.Element(f"{{{TR}}}listTraces", nsmap={None: TR})  # type: ignore[dict-item]
    for name in ("patientId", "from_", "to", "offset", "maxResults"):
        if name in fields:
            etree.SubElement(root, f"{{{TR}}}{name.rstrip('_')}").text = str(fields[name])
    return root


@dataclass
class Traces:
    soap: SoapClient
    pki: TestPki

    def call(
        self,
        patient_id: str,
        professional: str = "medecin",
        payload: etree._Element | None = None,
        **vihf: Any,
    ) -> SoapReply:
        vihf.setdefault("authentication_mode", AIR)
        headers = self.pki.vihf_headers(patient_id, professional, **vihf)()
        return self.soap.call(
            PATH, ACTION, list_traces() if payload is None else payload, headers=headers
        )


def status(reply: SoapReply) -> str:
    assert reply.fault is None and reply.http_status == 200
    assert reply.payload.tag == f"{{{TR}}}listTracesResponse"
    assert payload_errors(reply.payload) == []  # our answers are schema-valid
    return reply.payload.findtext("tr:output/tr:status", namespaces=NS)


def traces(reply: SoapReply) -> list[etree._Element]:
    assert status(reply) == "DMPOk", reply.payload.findtext("tr:output/tr:context", namespaces=NS)
    return reply.payload.findall("tr:output/tr:trace", NS)


def out(reply: SoapReply, name: str) -> str | None:
    return reply.payload.findtext(f"tr:output/tr:{name}", namespaces=NS)


def actor_ids(found: list[etree._Element]) -> set[str]:
    return {t.findtext("tr:actor/tr:id", namespaces=NS) for t in found}


@pytest.fixture(scope="module")
def tr(server: Server, test_pki: TestPki) -> Traces:
    return Traces(SoapClient(server.url), test_pki)


def xds(server: Server, test_pki: TestPki, pid: str, professional: str, **vihf: Any) -> XdsClient:
    vihf.setdefault("authentication_mode", AIR)
    return XdsClient(server.url, header_factory=test_pki.vihf_headers(pid, professional, **vihf))


def find(pid: str) -> dict[str, object]:
    return {"$XDSDocumentEntryPatientId": pid, "$XDSDocumentEntryStatus": [v.APPROVED]}


@dataclass
class Scene:
    """A record whose médecin traitant is ``medecin``, read by three professionals."""

    patient_id: str
    key: int


@pytest.fixture(scope="module")
def scene(server: Server, test_pki: TestPki, engine: Engine) -> Scene:
    pid = new_patient_id()
    with engine.begin() as conn:
        key = open_record(
            conn, pid, authorised=("medecin", "infirmier"), medecin_traitant="medecin"
        )
    xds(server, test_pki, pid, "medecin").stored_query(v.FIND_DOCUMENTS, find(pid))
    xds(server, test_pki, pid, "infirmier").stored_query(v.FIND_DOCUMENTS, find(pid))
    xds(
        server,
        test_pki,
        pid,
        "sage-femme",
        access_mode="bris_de_glace",
        access_motive=MOTIVE,
    ).stored_query(v.FIND_DOCUMENTS, find(pid))
    xds(
        server,
        test_pki,
        pid,
        "medecin",
        access_mode="centre_15",
        access_motive="appel au 15",
        access_motive_in="original_text",
    ).stored_query(v.FIND_DOCUMENTS, find(pid))
    return Scene(pid, key)


# --- emergency accesses in the trail and the security log -------------------------------------


def test_emergency_accesses_are_flagged_with_their_motive(scene, engine, server, test_pki):
    trail = trail_rows(engine, patient_id=scene.patient_id)
    flagged = [(r.actor_id, r.access_mode, r.access_motive) for r in trail if r.emergency]
    assert flagged == [
        (test_pki.professional("sage-femme").name_id, "bris_de_glace", MOTIVE),
        (test_pki.professional("medecin").name_id, "centre_15", "appel au 15"),
    ]
    assert all(r.access_motive is None for r in trail if not r.emergency)
    # The flag is indexed for reviews of every emergency access.
    with engine.connect() as conn:
        index = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'audit_event_emergency'")
        ).scalar_one()
    assert "(occurred_at) WHERE emergency" in index

    digest = hashlib.sha256(scene.patient_id.encode()).hexdigest()[:16]
    lines = [json.loads(x) for x in server.log_text().splitlines() if x.startswith("{")]
    warnings = [
        x for x in lines if x.get("msg") == "emergency access" and x.get("patient_hash") == digest
    ]
    assert [(w["level"], w["logger"], w["access_mode"], w["motive_given"]) for w in warnings] == [
        ("warning", "dmp_xds.security", "bris_de_glace", True),
        ("warning", "dmp_xds.security", "centre_15", True),
    ]
    raw = "\n".join(json.dumps(w, ensure_ascii=False) for w in warnings)
    assert scene.patient_id.split("^")[0] not in raw and MOTIVE not in raw


# --- who reads what -----------------------------------------------------------------------------


def test_the_medecin_traitant_reads_the_whole_trail(tr, scene, test_pki) -> None:
    reply = tr.call(scene.patient_id, "medecin")
    found = traces(reply)
    assert out(reply, "scope") == "RECORD"
    assert actor_ids(found) >= {
        test_pki.professional(p).name_id for p in ("medecin", "infirmier", "sage-femme")
    }
    ids = [int(t.findtext("tr:eventId", namespaces=NS)) for t in found]
    assert ids == sorted(ids, reverse=True)  # newest first
    urgent = [t for t in found if t.findtext("tr:emergency", namespaces=NS) == "true"]
    assert {t.findtext("tr:motive", namespaces=NS) for t in urgent} == {MOTIVE, "appel au 15"}
    assert {t.findtext("tr:accessMode", namespaces=NS) for t in urgent} == {
        "bris_de_glace",
        "centre_15",
    }
    query = next(t for t in found if t.findtext("tr:transaction", namespaces=NS) == "ITI-18")
    profession = query.find("tr:actor/tr:profession", NS)
    assert profession.get("codeSystem") == "1.2.250.1.71.1.2.7"
    assert query.findtext("tr:actor/tr:structureId", namespaces=NS) == test_pki.structure_id
    # What the trail keeps for operators stays out: client address, refusal details.
    assert b"127.0.0.1" not in etree.tostring(reply.payload)


def test_another_professional_reads_only_their_own_actions(tr, scene, test_pki) -> None:
    nurse = test_pki.professional("infirmier").name_id
    reply = tr.call(scene.patient_id, "infirmier")
    found = traces(reply)
    assert out(reply, "scope") == "OWN"
    assert actor_ids(found) == {nurse}
    assert "ITI-18" in {t.findtext("tr:transaction", namespaces=NS) for t in found}
    assert all(t.findtext("tr:emergency", namespaces=NS) == "false" for t in found)


def test_the_patient_reads_their_whole_trail(tr, scene, test_pki, engine) -> None:
    """Through the patient portal, the patient (and a legal representative) read every event
    of their record, and their reading is in the trail like anyone's."""
    portal = {"authentication_mode": "INDIRECTE"}
    reply = tr.call(scene.patient_id, "patient", **portal)
    found = traces(reply)
    assert out(reply, "scope") == "RECORD"
    assert actor_ids(found) >= {
        test_pki.professional(p).name_id for p in ("medecin", "infirmier", "sage-femme")
    }
    guardian = tr.call(scene.patient_id, "representant", **portal)
    assert out(guardian, "scope") == "RECORD"
    assert actor_ids(traces(guardian)) >= actor_ids(found)
    matricule = scene.patient_id.split("^")[0]
    [own] = [
        r
        for r in trail_rows(engine, patient_id=scene.patient_id)
        if r.transaction == "DMP-TRACES" and r.actor_id == matricule
    ]
    assert (own.outcome, own.profession, own.structure_id) == (
        "success",
        "PAT^^2.16.840.1.113883.5.110",
        test_pki.portal_id,
    )
    # not another patient's trail, nor in an emergency mode
    other = tr.call(scene.patient_id, "patient", list_traces(patientId=new_patient_id()), **portal)
    assert status(other) == "XDSPatientIdDoesNotMatch"
    glass = tr.call(scene.patient_id, "patient", access_mode="bris_de_glace", **portal)
    assert status(glass) == DENIED and "bris_de_glace" in out(glass, "context")
    assert glass.payload.findall("tr:output/tr:trace", NS) == []


def test_direct_mode_with_a_card(server, test_pki, scene) -> None:
    session = requests.Session()
    pem = test_pki.professionals["medecin"].cert_pem.decode()
    session.headers["X-SSL-Client-Cert"] = urllib.parse.quote(pem, safe="")
    reply = Traces(SoapClient(server.url, session=session), test_pki).call(
        scene.patient_id, "medecin", authentication_mode="DIRECTE", signer=None
    )
    assert traces(reply) and out(reply, "scope") == "RECORD"


def test_no_action_no_trace(tr, scene) -> None:
    """The sage-femme has one emergency access on the record: that is all she sees; on
    another patient she sees nothing (and never this patient's events)."""
    found = traces(tr.call(scene.patient_id, "sage-femme"))
    assert [t.findtext("tr:accessMode", namespaces=NS) for t in found] == ["bris_de_glace"]
    reply = tr.call(new_patient_id(), "sage-femme")
    assert traces(reply) == [] and out(reply, "total") == "0" and out(reply, "scope") == "OWN"


@pytest.mark.parametrize(
    ("professional", "vihf", "reason"),
    [
        ("medecin", {"authentication_mode": "INDIRECTE"}, "institution certificate"),
        ("medecin", {"access_mode": "bris_de_glace"}, "bris_de_glace"),
        ("infirmier", {"access_mode": "centre_15"}, "centre_15"),
    ],
    ids=["institution-certificate", "break-glass", "centre-15"],
)
def test_refused_callers(tr, scene, professional, vihf, reason) -> None:
    reply = tr.call(scene.patient_id, professional, **vihf)
    assert status(reply) == DENIED
    assert reason in out(reply, "context")
    assert reply.payload.findall("tr:output/tr:trace", NS) == []


def test_a_blocked_professional_is_refused(tr, engine) -> None:
    pid = new_patient_id()
    with engine.begin() as conn:
        key = open_record(
            conn, pid, authorised=("medecin", "infirmier"), medecin_traitant="medecin"
        )
    assert status(tr.call(pid, "infirmier")) == "DMPOk"
    with engine.begin() as conn:
        auth.block(conn, key, professional_actor("infirmier"), by="test")
    reply = tr.call(pid, "infirmier")
    assert status(reply) == DENIED and "blocked" in out(reply, "context")
    assert status(tr.call(pid, "medecin")) == "DMPOk"


def test_another_patients_trail(tr, scene, engine, test_pki) -> None:
    other = new_patient_id()
    with engine.begin() as conn:
        open_record(conn, other, authorised=("medecin",))  # no médecin traitant there
    # Naming another patient than the VIHF's: refused.
    reply = tr.call(other, "medecin", list_traces(patientId=scene.patient_id))
    assert status(reply) == "XDSPatientIdDoesNotMatch"
    # The VIHF's patient, named or not: the médecin is not MT there: own actions only.
    reply = tr.call(other, "medecin", list_traces(patientId=other + "^NH"))
    assert out(reply, "scope") == "OWN"
    assert {t.findtext("tr:transaction", namespaces=NS) for t in traces(reply)} <= {"DMP-TRACES"}


# --- the request ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        list_traces(maxResults=0),
        list_traces(maxResults=201),
        list_traces(offset=-1),
        list_traces(from_="yesterday"),
        list_traces(from_="2026-02-01T00:00:00Z", to="2026-01-01T00:00:00Z"),
        list_traces(patientId="not a CX"),
        etree.fromstring(f'<listTraces xmlns="{TR}"><unknown/></listTraces>'),
        etree.fromstring(
            f'<listTraces xmlns="{TR}"><maxResults>1</maxResults><offset>0</offset></listTraces>'
        ),
        etree.fromstring(f'<listTrace xmlns="{TR}"/>'),
        etree.fromstring('<listTraces xmlns="urn:example:other"/>'),
    ],
    ids=[
        "no-results",
        "too-many-results",
        "negative-offset",
        "not-a-date",
        "from-after-to",
        "not-a-cx",
        "unknown-parameter",
        "parameters-out-of-order",
        "misspelt-root",
        "other-namespace",
    ],
)
def test_malformed_requests_are_answered(tr, scene, payload) -> None:
    reply = tr.call(scene.patient_id, "medecin", payload)
    assert status(reply) == INVALID
    context = out(reply, "context")
    assert context and scene.patient_id not in context


def test_transport_errors_stay_soap_faults(tr, server, scene) -> None:
    headers = tr.pki.vihf_headers(scene.patient_id, authentication_mode=AIR)()
    reply = tr.soap.call(PATH, "urn:dmp-xds:traces:1:deleteTraces", list_traces(), headers=headers)
    assert reply.fault is not None and "not supported" in reply.fault.reason
    response = requests.post(
        server.url + PATH,
        data=b"<not xml",
        headers={"Content-Type": "application/soap+xml"},
        timeout=10,
    )
    assert response.status_code >= 400 and b"Fault" in response.content


def test_paging_and_dates(tr, scene) -> None:
    everything = tr.call(scene.patient_id, "medecin", list_traces(maxResults=200))
    total = int(out(everything, "total"))
    assert total >= 4 and len(traces(everything)) == total and out(everything, "more") == "false"
    first = tr.call(scene.patient_id, "medecin", list_traces(maxResults=2))
    assert len(traces(first)) == 2 and out(first, "more") == "true"
    last = tr.call(scene.patient_id, "medecin", list_traces(offset=total, maxResults=200))
    # The two calls since are in the trail too: past the first "total" (newest first), the
    # two oldest events remain.
    assert out(last, "offset") == str(total)
    assert len(traces(last)) == 2 and out(last, "more") == "false"
    future = tr.call(scene.patient_id, "medecin", list_traces(from_="2999-01-01T00:00:00"))
    assert traces(future) == [] and out(future, "total") == "0"
    past = tr.call(scene.patient_id, "medecin", list_traces(to="2000-01-01T00:00:00+01:00"))
    assert traces(past) == []


def test_trace_calls_are_audited(tr, scene, engine, test_pki) -> None:
    ok = tr.call(scene.patient_id, "medecin")
    refused = tr.call(scene.patient_id, "medecin", authentication_mode="INDIRECTE")
    mine = trail_rows(engine, patient_id=scene.patient_id, transaction="DMP-TRACES")
    outcomes = {(r.outcome, tuple(r.error_codes), tuple(r.objects)) for r in mine}
    assert ("success", (), ("trail:record",)) in outcomes
    assert ("failure", (DENIED,), ()) in outcomes
    assert status(ok) == "DMPOk" and status(refused) == DENIED


# --- the published contract ---------------------------------------------------------------------


def test_wsdl_and_schema_are_published(server) -> None:
    url = server.url + PATH
    wsdl = etree.fromstring(requests.get(url + "?wsdl", timeout=10).content)
    [imported] = wsdl.iter("{http://www.w3.org/2001/XMLSchema}import")
    assert imported.get("schemaLocation") == f"{url}?xsd=traces.xsd"
    schema = etree.fromstring(requests.get(imported.get("schemaLocation"), timeout=10).content)
    assert schema.get("targetNamespace") == TR

    import zeep

    client = zeep.Client(url + "?wsdl")
    [service] = client.wsdl.services.values()
    [port] = service.ports.values()
    assert "listTraces" in port.binding._operations


# --- the operator's export ----------------------------------------------------------------------


def dmp_xds(*args: str, database_url: str) -> subprocess.CompletedProcess:
    return run_cli(*args, env={"DMP_XDS_DATABASE_URL": database_url})


def test_operator_exports_a_patients_trail(scene, database_url, engine, test_pki) -> None:
    done = dmp_xds("trail", "--patient", scene.patient_id, database_url=database_url)
    assert done.returncode == 0, done.stderr
    exported = json.loads(done.stdout)
    assert exported["patient"] == scene.patient_id
    events = exported["events"]
    assert [e["event_id"] for e in events] == sorted(e["event_id"] for e in events)  # oldest first
    assert {e["actor_id"] for e in events} >= {
        test_pki.professional(p).name_id for p in ("medecin", "infirmier", "sage-femme")
    }
    urgent = [e for e in events if e["emergency"] and e["transaction"] == "ITI-18"]
    assert [e["access_motive"] for e in urgent] == [MOTIVE, "appel au 15"]
    # The trace calls the refusal tests made in emergency modes are flagged too.
    assert all(e["emergency"] == (e["access_mode"] != "normal") for e in events if e["actor_id"])
    assert "remote_addr" not in events[0]

    done = dmp_xds(
        "trail",
        "--patient",
        scene.patient_id,
        "--format",
        "csv",
        "--since",
        "2000-01-01",
        database_url=database_url,
    )
    assert done.returncode == 0, done.stderr
    table = list(csv.DictReader(io.StringIO(done.stdout)))
    # The first export is in the trail now, after the events it exported.
    assert len(table) == len(events) + 1
    assert table[-1]["transaction"] == "TRAIL-EXPORT" and table[-1]["emergency"] == "false"
    assert [r["access_motive"] for r in table if r["access_motive"]] == [MOTIVE, "appel au 15"]

    later = dmp_xds(
        "trail", "--patient", scene.patient_id, "--since", "2999-01-01", database_url=database_url
    )
    assert json.loads(later.stdout)["events"] == []
    exports = trail_rows(engine, patient_id=scene.patient_id, transaction="TRAIL-EXPORT")
    assert [e.objects for e in exports] == [
        [f"events:{len(events)}"],
        [f"events:{len(table)}"],
        ["events:0"],
    ]
    assert all(e.actor_id is None and "exported by" in e.detail for e in exports)


@pytest.mark.parametrize(
    "args",
    [
        ("trail", "--patient", "not-a-cx"),
        ("trail", "--patient", "1^^^&1.2.250.1.213.1.4.10&ISO", "--since", "last week"),
        ("trail", "--patient", "1^^^&1.2.250.1.213.1.4.10&ISO", "--format", "xml"),
        ("trail",),
    ],
    ids=["bad-patient", "bad-date", "bad-format", "no-patient"],
)
def test_operator_export_refuses_bad_arguments(args, database_url) -> None:
    done = dmp_xds(*args, database_url=database_url)
    assert done.returncode == 2
    assert done.stdout == ""
