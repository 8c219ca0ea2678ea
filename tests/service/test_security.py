"""Security over the real server: every call needs a valid VIHF; refusals are wsse faults
that change nothing and leave a structured log line; the VIHF's patient is the only one a call
can touch; DIRECTE through a trusted proxy and through our own TLS listener; hardening."""

from __future__ import annotations

import copy
import io
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from lxml import etree

from dmp_xds.app import Application
from dmp_xds.client.xds import SoapFaultError, XdsClient
from dmp_xds.config import Settings
from dmp_xds.metadata import vocabulary as v
from dmp_xds.namespaces import SAML2, WSSE
from dmp_xds.soap.xmlparser import serialize
from tests.conftest import REPOSITORY_UNIQUE_ID, Server, schema_checked, start_server, stop_server
from tests.fixtures.metadata import Doc, new_patient_id, submit_objects_request
from tests.fixtures.records import open_record
from tests.fixtures.security import proxy_session

INVALID = f"{{{WSSE}}}InvalidSecurity"
FAILED = f"{{{WSSE}}}FailedAuthentication"
FIND = v.FIND_DOCUMENTS


def find_params(patient_id: str) -> dict:
    return {"$XDSDocumentEntryPatientId": patient_id, "$XDSDocumentEntryStatus": [v.APPROVED]}


def submit(client: XdsClient, patient_id: str, doc: Doc):
    return client.provide_and_register(
        submit_objects_request(patient_id, [doc]), {"Document01": doc.content}
    )


@pytest.fixture
def other_patient(engine) -> str:
    pid = new_patient_id()
    with engine.begin() as conn:
        open_record(conn, pid)
    return pid


def refused_lines(server: Server) -> list[dict]:
    lines = []
    for line in server.log_text().splitlines():
        if '"call refused"' in line:
            lines.append(json.loads(line))
    return lines


# --- no VIHF, forged, replayed ----------------------------------------------------------------


@pytest.mark.parametrize("transaction", ["ITI-41", "ITI-42", "ITI-18", "ITI-43"])
def test_no_vihf_no_answer(client_for, patient_id, server, unchanged, transaction) -> None:
    client = client_for(patient_id, header_factory=lambda: [])
    doc = Doc(b"without a VIHF")
    with pytest.raises(SoapFaultError) as caught:
        if transaction == "ITI-41":
            submit(client, patient_id, doc)
        elif transaction == "ITI-42":
            client.register(submit_objects_request(patient_id, [doc], registry_side=True))
        elif transaction == "ITI-18":
            client.stored_query(FIND, find_params(patient_id))
        else:
            client.retrieve([(REPOSITORY_UNIQUE_ID, doc.unique_id)])
    fault = caught.value.fault
    assert (fault.code, fault.subcode) == ("Sender", INVALID)
    assert "VIHF" in fault.reason
    assert caught.value.reply.http_status == 400
    # One structured line says what was refused and why (and nothing about the patient).
    lines = [r for r in refused_lines(server) if r["check"] == "missing"]
    assert lines and lines[-1]["subcode"] == "InvalidSecurity"
    assert patient_id.split("^")[0] not in server.log_text()


def test_forged_vihf_is_refused(client_for, patient_id, test_pki, unchanged) -> None:
    honest = test_pki.vihf_headers(patient_id)

    def forged() -> list[etree._Element]:
        [security] = honest()
        # Change what is signed: the sector the professional claims.
        for value in security.iter(f"{{{SAML2}}}AttributeValue"):
            if value.text and value.text.startswith("SA07^"):
                value.text = "SA01^1.2.250.1.71.4.2.4"
        return [security]

    client = client_for(patient_id, header_factory=forged)
    with pytest.raises(SoapFaultError) as caught:
        submit(client, patient_id, Doc(b"forged"))
    assert caught.value.fault.subcode == FAILED
    assert "signature" in caught.value.fault.reason


def test_replayed_vihf_is_refused(client_for, patient_id, server) -> None:
    client = client_for(patient_id)
    [header] = client.header_factory()  # type: ignore[misc]
    from dmp_xds.client.xds import REGISTRY_PATH, adhoc_query_request

    action = "urn:ihe:iti:2007:RegistryStoredQuery"
    first = client.soap.send_envelope(
        REGISTRY_PATH,
        action,
        client.soap.envelope(
            REGISTRY_PATH, action, adhoc_query_request(FIND, find_params(patient_id)), [header]
        ),
    )
    assert first.fault is None
    again = client.soap.send_envelope(
        REGISTRY_PATH,
        action,
        client.soap.envelope(
            REGISTRY_PATH, action, adhoc_query_request(FIND, find_params(patient_id)), [header]
        ),
    )
    assert again.fault is not None and again.fault.subcode == FAILED
    assert "already been used" in again.fault.reason
    assert any(r["check"] == "replay" for r in refused_lines(server))


def test_assertion_of_a_failed_write_is_spent_too(client_for, patient_id, engine) -> None:
    """The replay claim commits before the handler runs: a submission that fails (and rolls
    back) still spends its assertion, which cannot then carry another body."""
    doc = Doc(b"premier")
    assert submit(client_for(patient_id), patient_id, doc).status == "Success"
    client = client_for(patient_id)
    [header] = client.header_factory()  # type: ignore[misc]
    client.header_factory = lambda: [copy.deepcopy(header)]
    failed = submit(client, patient_id, Doc(b"autre", unique_id=doc.unique_id))
    assert failed.status == "Failure" and failed.error_codes, failed.errors
    with pytest.raises(SoapFaultError) as caught:
        client.stored_query(FIND, find_params(patient_id))
    assert caught.value.fault.subcode == FAILED
    assert "already been used" in caught.value.fault.reason


def test_every_call_gets_a_new_assertion(client_for, patient_id) -> None:
    client = client_for(patient_id)
    for _ in range(3):
        assert client.stored_query(FIND, find_params(patient_id)).status == "Success"


# --- the VIHF's patient -----------------------------------------------------------------------


def test_submission_for_another_patient(client_for, patient_id, other_patient, unchanged) -> None:
    client = client_for(patient_id)
    result = submit(client, other_patient, Doc(b"for someone else"))
    assert result.status == "Failure"
    assert "XDSPatientIdDoesNotMatch" in result.error_codes
    assert any("SubmissionSet" in e.location for e in result.errors)
    registered = client.register(
        submit_objects_request(other_patient, [Doc(b"x")], registry_side=True)
    )
    assert "XDSPatientIdDoesNotMatch" in registered.error_codes


def test_queries_and_retrieve_stay_within_the_patient(client_for, patient_id, other_patient):
    theirs = client_for(other_patient)
    doc = Doc(b"the other patient's document")
    assert submit(theirs, other_patient, doc).status == "Success"
    mine = client_for(patient_id)

    found = mine.stored_query(FIND, find_params(other_patient))
    assert found.status == "Failure"
    assert found.error_codes == ["XDSPatientIdDoesNotMatch"]

    # By id: another patient's objects are absent, exactly as unknown ones.
    by_id = mine.stored_query(v.GET_DOCUMENTS, {"$XDSDocumentEntryUniqueId": [doc.unique_id]})
    unknown = mine.stored_query(v.GET_DOCUMENTS, {"$XDSDocumentEntryUniqueId": ["1.2.3.4.5"]})
    assert by_id.status == unknown.status == "Success"
    assert by_id.objects == unknown.objects == []
    assert (
        len(
            theirs.stored_query(
                v.GET_DOCUMENTS, {"$XDSDocumentEntryUniqueId": [doc.unique_id]}
            ).objects
        )
        == 1
    )

    got = mine.retrieve([(REPOSITORY_UNIQUE_ID, doc.unique_id)])
    missing = mine.retrieve([(REPOSITORY_UNIQUE_ID, "1.2.3.4.5")])
    assert got.status == missing.status == "Failure"
    assert got.error_codes == missing.error_codes == ["XDSDocumentUniqueIdError"]
    assert got.documents == []
    assert theirs.retrieve([(REPOSITORY_UNIQUE_ID, doc.unique_id)]).documents[0].content == (
        doc.content
    )


# --- DIRECTE through the trusted proxy --------------------------------------------------------


def test_directe_through_the_trusted_proxy(client_for, patient_id, test_pki) -> None:
    direct = {"authentication_mode": "DIRECTE", "signer": None}
    client = client_for(patient_id, vihf=direct, session=proxy_session(test_pki, "medecin"))
    assert submit(client, patient_id, Doc(b"direct")).status == "Success"
    wrong_card = client_for(patient_id, vihf=direct, session=proxy_session(test_pki, "infirmier"))
    with pytest.raises(SoapFaultError) as caught:
        wrong_card.stored_query(FIND, find_params(patient_id))
    assert "another professional" in caught.value.fault.reason
    no_card = client_for(patient_id, vihf=direct)
    with pytest.raises(SoapFaultError) as caught:
        no_card.stored_query(FIND, find_params(patient_id))
    assert "none was presented" in caught.value.fault.reason


# --- our own TLS listener ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(database_url, tmp_path_factory, test_pki) -> Iterator[Server]:
    """A second server with TLS and client certificates, and no trusted proxy."""
    srv = start_server(
        database_url,
        tmp_path_factory.mktemp("tls-server"),
        {**test_pki.server_env(), **test_pki.tls_env()},
        tls_ca=test_pki.ca_file,
    )
    yield srv
    stop_server(srv)


def tls_client(tls_server: Server, test_pki, patient_id: str, card: str | None, **vihf):
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE would override ``verify``
    session.verify = str(test_pki.ca_file)
    if card:
        session.cert = (str(test_pki.cert_file(card)), str(test_pki.key_file(card)))
    headers = test_pki.vihf_headers(patient_id, **vihf)
    # The security tests' second server: the only client not made by client_for.
    return schema_checked(XdsClient(tls_server.url, header_factory=headers, session=session))


def test_own_tls_listener_with_a_card(tls_server, test_pki, patient_id) -> None:
    direct = {"authentication_mode": "DIRECTE", "signer": None}
    client = tls_client(tls_server, test_pki, patient_id, "medecin", **direct)
    assert client.stored_query(FIND, find_params(patient_id)).status == "Success"
    # Indirect callers need no client certificate (the listener asks, does not require).
    indirect = tls_client(
        tls_server, test_pki, patient_id, None, authentication_mode="INDIRECTE_RENFORCEE"
    )
    assert indirect.stored_query(FIND, find_params(patient_id)).status == "Success"
    without = tls_client(tls_server, test_pki, patient_id, None, **direct)
    with pytest.raises(SoapFaultError) as caught:
        without.stored_query(FIND, find_params(patient_id))
    assert "none was presented" in caught.value.fault.reason
    other = tls_client(tls_server, test_pki, patient_id, "sage-femme", **direct)
    with pytest.raises(SoapFaultError):
        other.stored_query(FIND, find_params(patient_id))


def test_forwarded_certificate_from_an_untrusted_address(tls_server, test_pki, patient_id):
    client = tls_client(
        tls_server, test_pki, patient_id, None, authentication_mode="DIRECTE", signer=None
    )
    pem = test_pki.professionals["medecin"].cert_pem.decode()
    client.soap.session.headers["X-SSL-Client-Cert"] = urllib.parse.quote(pem, safe="")
    with pytest.raises(SoapFaultError) as caught:
        client.stored_query(FIND, find_params(patient_id))
    assert caught.value.fault.subcode == FAILED
    assert "not a trusted proxy" in caught.value.fault.reason


def test_tls_refuses_a_client_certificate_of_another_pki(tls_server, test_pki, tmp_path) -> None:
    from dmp_xds.security import pki as P

    stranger_ca = P.create_ca(P.name(CN="stranger"), key=test_pki.server.key)
    stranger = P.issue(stranger_ca, P.name(CN="899900000011"), key=test_pki.server.key)
    (tmp_path / "c.pem").write_bytes(stranger.cert_pem)
    (tmp_path / "c.key").write_bytes(stranger.key_pem)
    session = requests.Session()
    session.trust_env = False
    session.verify = str(test_pki.ca_file)
    assert session.get(tls_server.url + "/health", timeout=10).ok  # the server is trusted
    session.cert = (str(tmp_path / "c.pem"), str(tmp_path / "c.key"))
    with pytest.raises(requests.exceptions.ConnectionError) as caught:
        session.get(tls_server.url + "/health", timeout=10)
    assert "unknown ca" in str(caught.value).lower() or "alert" in str(caught.value).lower()


# --- hardening (transport errors come before authentication) ----------------------------------

CT12 = "application/soap+xml; charset=utf-8"


def test_xinclude_is_refused(server) -> None:
    body = (
        b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Body>"
        b"<x xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='file:///etc/passwd'"
        b" parse='text'/></x></s:Body></s:Envelope>"
    )
    response = requests.post(
        server.url + "/xds/registry", data=body, headers={"Content-Type": CT12}, timeout=30
    )
    assert response.status_code == 400
    assert b"XInclude" in response.content and b"root:" not in response.content
    assert b"InvalidSecurity" not in response.content  # refused by the transport, first


def test_too_many_attachments_over_http(server) -> None:
    boundary = "b0undary"
    root = (
        b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Body><x/>"
        b"</s:Body></s:Envelope>"
    )
    out = io.BytesIO()
    out.write(
        f'--{boundary}\r\nContent-Type: application/xop+xml; type="application/soap+xml"\r\n'
        "Content-ID: <root>\r\n\r\n".encode()
        + root
        + b"\r\n"
    )
    for n in range(Settings().max_attachments + 1):
        out.write(
            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-ID: <p{n}>\r\n\r\nx\r\n".encode()
        )
    out.write(f"--{boundary}--\r\n".encode())
    content_type = (
        f'multipart/related; boundary="{boundary}"; type="application/xop+xml"; '
        'start="<root>"; start-info="application/soap+xml"'
    )
    response = requests.post(
        server.url + "/xds/repository",
        data=out.getvalue(),
        headers={"Content-Type": content_type},
        timeout=60,
    )
    assert response.status_code in (400, 413)
    assert b"too many MIME parts" in response.content


def test_depth_limit_is_configurable(monkeypatch) -> None:
    monkeypatch.setenv("DMP_XDS_MAX_XML_DEPTH", "20")
    assert Settings.from_env().max_xml_depth == 20


# --- verification happens once per request, before any handler --------------------------------


def test_one_verification_per_request(database_url, test_pki, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=database_url,
        trust_store=test_pki.trust_dir,
        crl_path=test_pki.crl_dir,
        homologated_software=(test_pki.homologation,),
    )
    app = Application(settings)
    calls = []
    verify = app.authenticator.authenticate
    handled = []

    def counting(request, environ, db):
        calls.append(1)
        assert not handled  # before any handler
        return verify(request, environ, db)

    app.authenticator.authenticate = counting  # type: ignore[method-assign]
    handler = app.endpoints["/xds/registry"].handlers[v.ACTION_STORED_QUERY]

    def spying(call):
        handled.append(call.principal)
        return handler(call)

    app.endpoints["/xds/registry"].handlers[v.ACTION_STORED_QUERY] = spying
    patient = new_patient_id()
    from dmp_xds.client.transport import SoapClient
    from dmp_xds.client.xds import adhoc_query_request

    envelope = SoapClient("http://in-process").envelope(
        "/xds/registry",
        v.ACTION_STORED_QUERY,
        adhoc_query_request(FIND, find_params(patient)),
        test_pki.vihf_headers(patient)(),
    )
    body = serialize(envelope)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/xds/registry",
        "CONTENT_TYPE": CT12,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "REMOTE_ADDR": "127.0.0.1",
    }
    statuses = []
    chunks = app(environ, lambda status, headers: statuses.append(status))
    b"".join(chunks)
    assert statuses == ["200 OK"]
    assert len(calls) == 1
    assert handled and handled[0].patient.canonical == patient
    app.engine.dispose()
