"""Every ITI-41/42/18/43 failure answers the standard XDS error and changes nothing."""

from __future__ import annotations

import pytest
from lxml import etree

from dmp_xds.client.xds import XdsClient
from dmp_xds.metadata import vocabulary as v
from tests.conftest import REPOSITORY_UNIQUE_ID
from tests.fixtures.metadata import Doc, new_patient_id, submit_objects_request

APPROVED = ["urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"]


def codes(result) -> list[str]:
    return [e.code for e in result.errors]


def submit(client: XdsClient, patient_id: str, docs: list[Doc], attachments=None, **kw):
    request = submit_objects_request(patient_id, docs, **kw)
    if attachments is None:
        attachments = {d.symbolic_id: d.content for d in docs}
    return client.provide_and_register(request, attachments)


@pytest.mark.usefixtures("unchanged")
def test_unknown_patient(client_for) -> None:
    unknown = new_patient_id()
    result = submit(client_for(unknown), unknown, [Doc(b"x")])
    assert result.status == "Failure"
    assert "XDSUnknownPatientId" in codes(result)


@pytest.mark.usefixtures("unchanged")
def test_missing_document(client: XdsClient, patient_id: str) -> None:
    docs = [Doc(b"one"), Doc(b"two")]
    result = submit(client, patient_id, docs, attachments={"Document01": b"one"})
    assert result.status == "Failure"
    assert codes(result) == ["XDSMissingDocument"]
    assert result.errors[0].location == "DocumentEntry Document02"


@pytest.mark.usefixtures("unchanged")
def test_missing_document_metadata(client: XdsClient, patient_id: str) -> None:
    doc = Doc(b"one")
    result = submit(
        client, patient_id, [doc], attachments={"Document01": b"one", "Stray": b"stray"}
    )
    assert result.status == "Failure"
    assert codes(result) == ["XDSMissingDocumentMetadata"]
    assert "Stray" in result.errors[0].context


@pytest.mark.usefixtures("unchanged")
def test_non_identical_hash(client: XdsClient, patient_id: str) -> None:
    doc = Doc(b"the real bytes", hash="0" * 40)
    result = submit(client, patient_id, [doc])
    assert result.status == "Failure"
    assert "XDSNonIdenticalHash" in codes(result)
    assert any("hash" in e.location for e in result.errors)


@pytest.mark.usefixtures("unchanged")
def test_non_identical_size(client: XdsClient, patient_id: str) -> None:
    doc = Doc(b"the real bytes", size="999")
    result = submit(client, patient_id, [doc])
    assert result.status == "Failure"
    assert "XDSNonIdenticalSize" in codes(result)


def test_duplicate_unique_id_in_registry(
    client: XdsClient, patient_id: str, engine, server
) -> None:
    from tests.conftest import snapshot

    first = Doc(b"first")
    assert submit(client, patient_id, [first]).status == "Success"
    before = snapshot(engine, server.store_dir)
    again = Doc(b"first", unique_id=first.unique_id)
    result = submit(client, patient_id, [again])
    assert result.status == "Failure"
    assert "XDSDuplicateUniqueIdInRegistry" in codes(result)
    assert snapshot(engine, server.store_dir) == before
    other_bytes = Doc(b"other bytes", unique_id=first.unique_id)
    result = client.register(submit_objects_request(patient_id, [other_bytes], registry_side=True))
    assert "XDSNonIdenticalHash" in codes(result)
    assert snapshot(engine, server.store_dir) == before


@pytest.mark.usefixtures("unchanged")
def test_every_error_of_a_submission_at_once(client: XdsClient, patient_id: str) -> None:
    bad_time = Doc(b"a", creation_time="2026-01-15")
    wrong_patient = Doc(b"b", patient_id=new_patient_id())
    no_attachment = Doc(b"c")
    result = submit(
        client,
        patient_id,
        [bad_time, wrong_patient, no_attachment],
        attachments={"Document01": b"a", "Document02": b"b"},
    )
    found = set(codes(result))
    assert {
        "XDSRepositoryMetadataError",
        "XDSPatientIdDoesNotMatch",
        "XDSMissingDocument",
    } <= found
    for err in result.errors:
        assert err.location, err


@pytest.mark.usefixtures("unchanged")
def test_register_requires_hash_and_size(client: XdsClient, patient_id: str) -> None:
    result = client.register(submit_objects_request(patient_id, [Doc(b"x")]))
    assert result.status == "Failure"
    assert set(codes(result)) == {"XDSRegistryMetadataError"}
    assert {e.location.rsplit(" / ", 1)[-1] for e in result.errors} == {
        "hash",
        "size",
        "repositoryUniqueId",
    }


def test_unknown_stored_query(client: XdsClient) -> None:
    result = client.stored_query("urn:uuid:00000000-0000-0000-0000-000000000000", {})
    assert result.status == "Failure"
    assert codes(result) == ["XDSUnknownStoredQuery"]


def test_missing_required_query_parameter(client: XdsClient) -> None:
    result = client.stored_query(v.FIND_DOCUMENTS, {"$XDSDocumentEntryStatus": APPROVED})
    assert result.status == "Failure"
    assert codes(result) == ["XDSStoredQueryMissingParam"]
    assert "PatientId" in result.errors[0].context


def test_get_documents_needs_exactly_one_key(client: XdsClient) -> None:
    result = client.stored_query(
        v.GET_DOCUMENTS,
        {"$XDSDocumentEntryEntryUUID": ["urn:uuid:1"], "$XDSDocumentEntryUniqueId": ["1.2"]},
    )
    assert result.status == "Failure"
    assert "XDSStoredQueryParamNumber" in codes(result)


def test_retrieve_unknown_and_partial(client: XdsClient, patient_id: str) -> None:
    doc = Doc(b"retrievable")
    assert submit(client, patient_id, [doc]).status == "Success"
    unknown = client.retrieve([(REPOSITORY_UNIQUE_ID, "1.2.3.4.5.6.7.8.9")])
    assert unknown.status == "Failure"
    assert codes(unknown) == ["XDSDocumentUniqueIdError"]
    assert unknown.documents == []
    partial = client.retrieve(
        [(REPOSITORY_UNIQUE_ID, doc.unique_id), (REPOSITORY_UNIQUE_ID, "1.2.3.4.5.6.7.8.9")]
    )
    assert partial.status == "PartialSuccess"
    assert [d.content for d in partial.documents] == [b"retrievable"]
    wrong_repo = client.retrieve([("1.2.3.999", doc.unique_id)])
    assert codes(wrong_repo) == ["XDSUnknownRepositoryId"]


def test_corrupted_document_is_never_served(client: XdsClient, patient_id: str, server) -> None:
    import hashlib
    import os

    content = b"bytes that will rot on disk"
    doc = Doc(content)
    assert submit(client, patient_id, [doc]).status == "Success"
    key = hashlib.sha256(content).hexdigest()
    [path] = list((server.store_dir / "sha256").rglob(key))
    os.chmod(path, 0o640)
    path.write_bytes(b"bytes that will rot on disX")
    result = client.retrieve([(REPOSITORY_UNIQUE_ID, doc.unique_id)])
    assert result.status == "Failure"
    assert codes(result) == ["XDSRepositoryError"]
    assert result.documents == []


def test_leaf_class_objects_are_well_formed_ebrim(client: XdsClient, patient_id: str) -> None:
    doc = Doc(b"x")
    assert submit(client, patient_id, [doc]).status == "Success"
    found = client.stored_query(
        v.FIND_DOCUMENTS,
        {"$XDSDocumentEntryPatientId": patient_id, "$XDSDocumentEntryStatus": APPROVED},
    )
    [entry] = found.objects
    assert etree.QName(entry).namespace == "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
    assert entry.get("lid") == entry.get("id")


@pytest.mark.usefixtures("unchanged")
def test_schema_invalid_metadata_is_refused(client: XdsClient, patient_id: str) -> None:
    request = submit_objects_request(patient_id, [Doc(b"x")])
    rim = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
    entry = request.find(f".//{{{rim}}}ExtrinsicObject")
    assert entry is not None
    entry.insert(0, etree.Element(f"{{{rim}}}Slott", name="misspelt"))
    result = client.provide_and_register(request, {"Document01": b"x"})
    assert result.status == "Failure"
    assert set(codes(result)) == {"XDSRepositoryMetadataError"}
    assert all(e.context.startswith("schema:") for e in result.errors)
    assert "Slott" in result.errors[0].context
