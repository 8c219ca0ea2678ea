"""ATNA export against real collectors: the real server (``DMP_XDS_ATNA_URL``) sends each audit
event as an RFC 5424 syslog record, framed by octet counting (RFC 5425), over plain TCP and over
mutual TLS, to a listener run by the test. The records are parsed and their DICOM audit
messages validated. With the collector down, calls succeed as before and nothing waits; the
events come through once it is back."""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from lxml import etree
from sqlalchemy import Engine

from dmp_xds.client.xds import SoapFaultError, XdsClient
from dmp_xds.metadata import vocabulary as v
from dmp_xds.resources import resource_dir
from dmp_xds.security.pki import TestPki
from tests.conftest import (
    REPOSITORY_UNIQUE_ID,
    TRUSTED_PROXIES,
    Server,
    free_port,
    start_server,
    stop_server,
)
from tests.fixtures.metadata import Doc, new_patient_id, submit_objects_request
from tests.fixtures.records import open_record
from tests.fixtures.trail import trail_rows

HEADER = re.compile(
    rb"<85>1 (?P<when>\S+) (?P<host>\S+) dmp-xds (?P<pid>\d+) IHE\+RFC-3881 - \xef\xbb\xbf"
)
AIR = {"authentication_mode": "INDIRECTE_RENFORCEE"}


class Collector:
    """A syslog collector: accepts connections (TLS if given a context), reads octet-counted
    frames, keeps the records; also remembers the client certificates it saw."""

    def __init__(self, context: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self.records: list[bytes] = []
        self.peer_subjects: list[object] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
                with self._lock:
                    self.peer_subjects.append(conn.getpeercert())
            buffer = b""
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                while b" " in buffer[:12]:
                    length, _, rest = buffer.partition(b" ")
                    assert length.isdigit(), f"bad frame length {length[:12]!r}"
                    if len(rest) < int(length):
                        break
                    with self._lock:
                        self.records.append(rest[: int(length)])
                    buffer = rest[int(length) :]
        except (OSError, AssertionError, ssl.SSLError) as exc:
            with self._lock:
                self.errors.append(repr(exc))
        finally:
            conn.close()

    def wait_for(self, done: Callable[[list[bytes]], bool], timeout_s: float = 20) -> list[bytes]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                got = list(self.records)
            if done(got):
                return got
            time.sleep(0.05)
        raise AssertionError(f"collector got {len(got)} records; errors {self.errors}")

    def close(self) -> None:
        self._closed = True
        self.listener.close()


@pytest.fixture(scope="module")
def schema() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(resource_dir("schemas") / "dicom-audit-message.rng")))


def message_of(record: bytes, schema: etree.RelaxNG) -> etree._Element:
    """The DICOM audit message of one syslog record, checked against the schema."""
    header = HEADER.match(record)
    assert header is not None, record[:120]
    message = etree.fromstring(record[header.end() :])
    assert schema.validate(message), schema.error_log
    return message


def about(patient_id: str) -> Callable[[etree._Element], bool]:
    return lambda m: any(
        o.get("ParticipantObjectID") == patient_id
        for o in m.iterfind("ParticipantObjectIdentification")
    )


def event_id(message: etree._Element) -> str:
    return message.find("EventIdentification/EventID").get("csd-code")


def type_codes(message: etree._Element) -> list[str]:
    return [c.get("csd-code") for c in message.iterfind("EventIdentification/EventTypeCode")]


def server_with(
    database_url: str, tmp_path_factory, test_pki: TestPki, atna: dict[str, str]
) -> Server:
    return start_server(
        database_url,
        tmp_path_factory.mktemp("atna-server"),
        {**test_pki.server_env(), "DMP_XDS_TRUSTED_PROXIES": TRUSTED_PROXIES, **atna},
    )


def patient(engine: Engine) -> str:
    pid = new_patient_id()
    with engine.begin() as conn:
        open_record(conn, pid, authorised=("medecin", "infirmier"))
    return pid


def client(server: Server, test_pki: TestPki, pid: str, **vihf: object) -> XdsClient:
    return XdsClient(server.url, header_factory=test_pki.vihf_headers(pid, **{**AIR, **vihf}))


def find(pid: str) -> dict[str, object]:
    return {"$XDSDocumentEntryPatientId": pid, "$XDSDocumentEntryStatus": [v.APPROVED]}


# --- plain TCP ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tcp_collector() -> Iterator[Collector]:
    collector = Collector()
    yield collector
    collector.close()


@pytest.fixture(scope="module")
def tcp_server(database_url, tmp_path_factory, test_pki, tcp_collector) -> Iterator[Server]:
    srv = server_with(
        database_url,
        tmp_path_factory,
        test_pki,
        {
            "DMP_XDS_ATNA_URL": f"tcp://127.0.0.1:{tcp_collector.port}",
            "DMP_XDS_ATNA_SOURCE_ID": "dmp-xds-atna-test",
        },
    )
    yield srv
    stop_server(srv)


def test_every_event_reaches_the_collector(
    tcp_server, tcp_collector, test_pki, engine, schema
) -> None:
    pid = patient(engine)
    me = client(tcp_server, test_pki, pid)
    doc = Doc(b"exported? never: only its identifiers")
    submitted = me.provide_and_register(
        submit_objects_request(pid, [doc], ss_unique_id="1.2.250.1.999.77.1"),
        {"Document01": doc.content},
    )
    assert submitted.status == "Success", submitted.errors
    found = me.stored_query(v.FIND_DOCUMENTS, find(pid))
    assert len(found.objects) == 1
    assert me.retrieve([(REPOSITORY_UNIQUE_ID, doc.unique_id)]).documents
    urgent = client(
        tcp_server,
        test_pki,
        pid,
        professional="sage-femme",
        access_mode="bris_de_glace",
        access_motive="hémorragie, patiente inconsciente",
    )
    urgent.stored_query(v.FIND_DOCUMENTS, find(pid))

    trail = trail_rows(engine, patient_id=pid)
    assert len(trail) == 4
    records = tcp_collector.wait_for(
        lambda got: sum(about(pid)(message_of(r, schema)) for r in got) >= len(trail)
    )
    mine = [m for m in (message_of(r, schema) for r in records) if about(pid)(m)]
    assert len(mine) == len(trail)  # one message per event of the trail, no more
    by_type = {type_codes(m)[0]: m for m in mine if type_codes(m)[0] != "ITI-18"}
    queries = [m for m in mine if type_codes(m)[0] == "ITI-18"]

    pnr = by_type["ITI-41"]
    assert event_id(pnr) == "110107"
    assert "1.2.250.1.999.77.1" in [
        o.get("ParticipantObjectID") for o in pnr.iterfind("ParticipantObjectIdentification")
    ]
    retrieve = by_type["ITI-43"]
    assert event_id(retrieve) == "110106"
    assert doc.unique_id in [
        o.get("ParticipantObjectID") for o in retrieve.iterfind("ParticipantObjectIdentification")
    ]
    normal, emergency = sorted(queries, key=lambda m: "110127" in type_codes(m))
    assert event_id(normal) == "110112" and normal.find(".//PurposeOfUse") is None
    assert "110127" in type_codes(emergency)
    assert emergency.find("EventIdentification/PurposeOfUse").get("csd-code") == "bris_de_glace"
    humans = [
        a for a in emergency.iterfind("ActiveParticipant") if a.get("UserIsRequestor") == "true"
    ]
    assert [h.get("UserID") for h in humans] == [test_pki.professional("sage-femme").name_id]
    for m in mine:
        assert m.find("AuditSourceIdentification").get("AuditSourceID") == "dmp-xds-atna-test"
        client_side = m.find("ActiveParticipant")
        assert client_side.get("NetworkAccessPointID") == "127.0.0.1"
        # Message times are the trail's own.
        assert m.find("EventIdentification").get("EventDateTime").endswith("Z")
    # Never any document content.
    assert not any(doc.content in r for r in records)


def test_refused_calls_are_exported_as_authentication_failures(
    tcp_server, tcp_collector, test_pki, engine, schema
) -> None:
    before = len(tcp_collector.records)
    unsigned = client(tcp_server, test_pki, new_patient_id(), signer=None)
    with pytest.raises(SoapFaultError):
        unsigned.stored_query(v.FIND_DOCUMENTS, {"$XDSDocumentEntryPatientId": "x"})
    records = tcp_collector.wait_for(
        lambda got: any(event_id(message_of(r, schema)) == "110114" for r in got[before:])
    )
    [refused] = [
        m for m in (message_of(r, schema) for r in records[before:]) if event_id(m) == "110114"
    ]
    assert type_codes(refused) == ["110122", "ITI-18"]
    assert refused.find("EventIdentification").get("EventOutcomeIndicator") == "8"


# --- mutual TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_collector(test_pki) -> Iterator[Collector]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(test_pki.cert_file("server"), test_pki.key_file("server"))
    context.verify_mode = ssl.CERT_REQUIRED  # ATNA node authentication: both ends
    context.load_verify_locations(test_pki.ca_file)
    collector = Collector(context)
    yield collector
    collector.close()


def test_over_mutual_tls(
    database_url, tmp_path_factory, test_pki, tls_collector, engine, schema
) -> None:
    # The test PKI's card certificate stands for the node's client certificate (client EKU).
    srv = server_with(
        database_url,
        tmp_path_factory,
        test_pki,
        {
            "DMP_XDS_ATNA_URL": f"tls://127.0.0.1:{tls_collector.port}",
            "DMP_XDS_ATNA_CA": str(test_pki.ca_file),
            "DMP_XDS_ATNA_CERT": str(test_pki.cert_file("medecin")),
            "DMP_XDS_ATNA_KEY": str(test_pki.key_file("medecin")),
        },
    )
    try:
        pid = patient(engine)
        found = client(srv, test_pki, pid).stored_query(v.FIND_DOCUMENTS, find(pid))
        assert found.status == "Success", found.errors
        records = tls_collector.wait_for(
            lambda got: any(about(pid)(message_of(r, schema)) for r in got)
        )
        [message] = [m for m in (message_of(r, schema) for r in records) if about(pid)(m)]
        assert type_codes(message) == ["ITI-18"]
        assert tls_collector.peer_subjects, "the collector saw no client certificate"
        subject = dict(pair for rdn in tls_collector.peer_subjects[0]["subject"] for pair in rdn)
        assert subject["commonName"] == test_pki.professional("medecin").name_id
    finally:
        stop_server(srv)


def test_a_collector_we_do_not_trust_gets_nothing(
    database_url, tmp_path_factory, test_pki, engine, tmp_path
) -> None:
    """TLS without our CA file: the system's CAs do not know the test PKI, so the exporter
    refuses the collector (and the calls still succeed)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(test_pki.cert_file("server"), test_pki.key_file("server"))
    collector = Collector(context)
    srv = server_with(
        database_url,
        tmp_path_factory,
        test_pki,
        {"DMP_XDS_ATNA_URL": f"tls://127.0.0.1:{collector.port}"},
    )
    try:
        pid = patient(engine)
        me = client(srv, test_pki, pid)
        assert me.stored_query(v.FIND_DOCUMENTS, find(pid)).status == ("Success")
        time.sleep(1.5)
        assert collector.records == []
        assert any("CERTIFICATE" in e.upper() or "ALERT" in e.upper() for e in collector.errors)
    finally:
        stop_server(srv)
        collector.close()


# --- collector down ----------------------------------------------------------------------------


def metric(server: Server, result: str) -> float:
    body = requests.get(server.url + "/metrics", timeout=10).text
    found = re.search(
        rf'^dmp_xds_atna_messages_total\{{result="{result}"\}} (\S+)$', body, re.MULTILINE
    )
    return float(found.group(1)) if found else 0.0


def test_collector_down_nothing_waits_then_it_catches_up(
    database_url, tmp_path_factory, test_pki, engine, schema
) -> None:
    port = free_port()  # nothing listens there (yet)
    srv = server_with(
        database_url,
        tmp_path_factory,
        test_pki,
        {
            "DMP_XDS_ATNA_URL": f"tcp://127.0.0.1:{port}",
            "DMP_XDS_ATNA_QUEUE_SIZE": "3",
            "DMP_XDS_WORKERS": "1",
        },
    )
    collector = None
    try:
        pid = patient(engine)
        me = client(srv, test_pki, pid)
        timings = []
        for _ in range(10):
            started = time.perf_counter()
            found = me.stored_query(v.FIND_DOCUMENTS, find(pid))
            timings.append(time.perf_counter() - started)
            assert found.status == "Success"
        assert max(timings) < 2.0, timings
        assert len(trail_rows(engine, patient_id=pid)) == 10  # the trail has everything
        # One message held by the sender, three queued: the other six were dropped, counted.
        dropped = metric(srv, "dropped")
        assert dropped >= 6
        assert metric(srv, "send_error") >= 1
        assert metric(srv, "sent") == 0

        collector = Collector(port=port)
        kept = 10 - int(dropped)
        records = collector.wait_for(
            lambda got: sum(about(pid)(message_of(r, schema)) for r in got) >= kept, timeout_s=45
        )
        assert sum(about(pid)(message_of(r, schema)) for r in records) == kept
        deadline = time.monotonic() + 5
        while metric(srv, "sent") < kept and time.monotonic() < deadline:
            time.sleep(0.1)
        assert metric(srv, "sent") == kept
    finally:
        stop_server(srv)
        if collector is not None:
            collector.close()


def test_bad_collector_url_stops_the_start(database_url, tmp_path: Path, test_pki) -> None:
    with pytest.raises(RuntimeError, match="DMP_XDS_ATNA_URL"):
        start_server(
            database_url,
            tmp_path / "bad",
            {**test_pki.server_env(), "DMP_XDS_ATNA_URL": "syslog://127.0.0.1"},
        )
