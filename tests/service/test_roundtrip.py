"""ITI-41 -> ITI-18 -> ITI-43 over HTTP against the real server and PostgreSQL."""

from __future__ import annotations

import hashlib

from lxml import etree
from sqlalchemy import text

from dmp_xds.client.xds import XdsClient
from dmp_xds.metadata import vocabulary as v
from dmp_xds.soap.envelope import SoapVersion
from tests.conftest import REPOSITORY_UNIQUE_ID
from tests.fixtures.metadata import Doc, submit_objects_request

APPROVED = ["urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"]


def slot(element: etree._Element, name: str) -> list[str]:
    for s in element.iterfind("{*}Slot"):
        if s.get("name") == name:
            return [val.text or "" for val in s.iterfind("{*}ValueList/{*}Value")]
    return []


def external_id(element: etree._Element, scheme: str) -> str | None:
    for ei in element.iterfind("{*}ExternalIdentifier"):
        if ei.get("identificationScheme") == scheme:
            return ei.get("value")
    return None


def find_documents(client: XdsClient, patient_id: str, return_type: str = "LeafClass"):
    return client.stored_query(
        v.FIND_DOCUMENTS,
        {"$XDSDocumentEntryPatientId": patient_id, "$XDSDocumentEntryStatus": APPROVED},
        return_type=return_type,
    )


def test_round_trip_one_document(client: XdsClient, patient_id: str) -> None:
    content = b"\r\nCompte rendu d'hospitalisation\r\n--fake-boundary\r\n\x00\xff\r\n"
    doc = Doc(content)
    result = client.provide_and_register(
        submit_objects_request(patient_id, [doc]), {"Document01": content}
    )
    assert result.status == "Success", result.errors
    assert result.reply.action == "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse"
    assert result.reply.relates_to

    found = find_documents(client, patient_id)
    assert found.status == "Success", found.errors
    [entry] = found.objects
    assert etree.QName(entry).localname == "ExtrinsicObject"
    assert entry.get("status") == v.APPROVED
    assert external_id(entry, v.DE_UNIQUE_ID) == doc.unique_id
    assert slot(entry, "hash") == [hashlib.sha1(content).hexdigest()]  # noqa: S324
    assert slot(entry, "size") == [str(len(content))]
    assert slot(entry, "repositoryUniqueId") == [REPOSITORY_UNIQUE_ID]
    assert slot(entry, "sourcePatientInfo") == [
        "PID-5|DUPONT^JEANNE^^^^^L",
        "PID-7|19700101",
        "PID-8|F",
    ]
    entry_uuid = entry.get("id")
    assert entry_uuid and entry_uuid.startswith("urn:uuid:")

    refs = find_documents(client, patient_id, "ObjectRef")
    assert [o.get("id") for o in refs.objects] == [entry_uuid]
    assert all(etree.QName(o).localname == "ObjectRef" for o in refs.objects)

    by_uuid = client.stored_query(v.GET_DOCUMENTS, {"$XDSDocumentEntryEntryUUID": [entry_uuid]})
    by_uid = client.stored_query(v.GET_DOCUMENTS, {"$XDSDocumentEntryUniqueId": [doc.unique_id]})
    assert [o.get("id") for o in by_uuid.objects] == [entry_uuid]
    assert [o.get("id") for o in by_uid.objects] == [entry_uuid]

    retrieved = client.retrieve([(REPOSITORY_UNIQUE_ID, doc.unique_id)])
    assert retrieved.status == "Success", retrieved.errors
    [got] = retrieved.documents
    assert got.content == content
    assert got.mime_type == "text/plain"
    assert got.document_uid == doc.unique_id


def test_round_trip_twenty_documents(client: XdsClient, patient_id: str) -> None:
    docs = [Doc(f"document {i}\n".encode() * (i + 1) * 100) for i in range(20)]
    request = submit_objects_request(patient_id, docs)
    result = client.provide_and_register(request, {d.symbolic_id: d.content for d in docs})
    assert result.status == "Success", result.errors
    found = find_documents(client, patient_id)
    assert len(found.objects) == 20
    retrieved = client.retrieve([(REPOSITORY_UNIQUE_ID, d.unique_id) for d in docs])
    assert retrieved.status == "Success"
    by_uid = {r.document_uid: r.content for r in retrieved.documents}
    assert by_uid == {d.unique_id: d.content for d in docs}


def test_inline_base64_documents(client: XdsClient, patient_id: str) -> None:
    content = b"<ClinicalDocument/>\n"
    doc = Doc(content, mime_type="text/xml")
    result = client.provide_and_register(
        submit_objects_request(patient_id, [doc]), {"Document01": content}, mtom=False
    )
    assert result.status == "Success", result.errors
    retrieved = client.retrieve([(REPOSITORY_UNIQUE_ID, doc.unique_id)])
    assert retrieved.documents[0].content == content


def test_soap11_is_answered_in_soap11(client_for, patient_id: str) -> None:
    client = client_for(patient_id, soap_version=SoapVersion.SOAP11)
    doc = Doc(b"soap 1.1 document")
    result = client.provide_and_register(
        submit_objects_request(patient_id, [doc]), {"Document01": doc.content}
    )
    assert result.status == "Success", result.errors
    assert result.reply.version is SoapVersion.SOAP11
    found = find_documents(client, patient_id)
    assert found.reply.version is SoapVersion.SOAP11
    assert len(found.objects) == 1


def test_register_iti42_then_query(client: XdsClient, patient_id: str) -> None:
    doc = Doc(b"registered elsewhere")
    result = client.register(submit_objects_request(patient_id, [doc], registry_side=True))
    assert result.status == "Success", result.errors
    assert result.reply.action == "urn:ihe:iti:2007:RegisterDocumentSet-bResponse"
    [entry] = find_documents(client, patient_id).objects
    assert slot(entry, "hash") == [doc.sha1]


def test_same_bytes_are_stored_once(client: XdsClient, patient_id: str, server) -> None:
    content = b"identical bytes in two documents"
    docs = [Doc(content), Doc(content)]
    result = client.provide_and_register(
        submit_objects_request(patient_id, docs), {d.symbolic_id: content for d in docs}
    )
    assert result.status == "Success", result.errors
    key = hashlib.sha256(content).hexdigest()
    stored = list((server.store_dir / "sha256").rglob(key))
    assert len(stored) == 1
    assert stored[0].read_bytes() == content


def test_non_ascii_metadata_comes_back_as_sent(client: XdsClient, patient_id: str, engine) -> None:
    """Fragments are stored as ASCII with character references (register.fragment): the
    answer is the same XML, whatever the script of its text."""
    description = "Compte rendu émis à Besançon, « urgent » 𝔸 – 診療"
    doc = Doc(b"contenu")
    request = submit_objects_request(patient_id, [doc])
    entry = request.find(".//{*}ExtrinsicObject")
    entry.find("{*}Description/{*}LocalizedString").set("value", description)
    result = client.provide_and_register(request, {"Document01": doc.content})
    assert result.status == "Success", result.errors
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT ebrim FROM document_entry WHERE unique_id = :u"), {"u": doc.unique_id}
        ).scalar_one()
    assert stored.isascii() and "&#233;" in stored
    for answer in (
        find_documents(client, patient_id),
        client.stored_query(v.GET_DOCUMENTS, {"$XDSDocumentEntryUniqueId": [doc.unique_id]}),
    ):
        [entry] = answer.objects
        assert entry.find("{*}Description/{*}LocalizedString").get("value") == description
