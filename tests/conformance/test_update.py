"""ITI-57 Update Document Set over the real server: new metadata versions and availability
status changes (NIST 15800, 15800b, 15802, 20001, 20002 in our own words), and the DMP's
Archived / Deleted statuses."""

from __future__ import annotations

import threading

import pytest
from lxml import etree

from dmp_xds.client.xds import XdsClient
from dmp_xds.metadata import vocabulary as v
from tests.fixtures.metadata import Doc, submit_objects_request
from tests.fixtures.updates import RIM, new_version, registered, status_update, versions


def test_new_version(client: XdsClient, patient_id: str) -> None:
    doc = Doc(b"version one")
    stored = client.provide_and_register(
        submit_objects_request(patient_id, [doc]), {"Document01": doc.content}
    )
    assert stored.status == "Success", stored.errors
    lid = versions(client, doc)[0].get("id")
    doc.confidentiality = ("R", "2.16.840.1.113883.5.25", "Restricted")
    result = client.update(new_version(patient_id, doc, lid))
    assert result.status == "Success", result.errors
    first, second = versions(client, doc)
    assert first.get("id") == lid and first.get("status") == v.DEPRECATED
    assert second.get("lid") == lid and second.get("id") != lid
    assert second.get("status") == v.APPROVED
    assert second.find(f"{{{RIM}}}VersionInfo").get("versionName") == "2"
    codes = [
        c.get("nodeRepresentation")
        for c in second.iter(f"{{{RIM}}}Classification")
        if c.get("classificationScheme") == v.DE_CONFIDENTIALITY_CODE
    ]
    assert codes == ["R"]
    approved = client.stored_query(
        v.FIND_DOCUMENTS,
        {"$XDSDocumentEntryPatientId": patient_id, "$XDSDocumentEntryStatus": [v.APPROVED]},
    )
    assert [o.get("id") for o in approved.objects] == [second.get("id")]
    # The new version describes the same bytes: they are still retrieved by uniqueId.
    [got] = client.retrieve([("1.2.250.1.999.1.1.1", doc.unique_id)]).documents
    assert got.content == b"version one"


@pytest.mark.usefixtures("unchanged")
def test_update_of_an_unknown_logical_id(client: XdsClient, patient_id: str) -> None:
    doc = Doc(b"never registered")
    result = client.update(
        new_version(patient_id, doc, "urn:uuid:0f0f0f0f-1111-4222-8333-444444444444")
    )
    assert result.status == "Failure"
    assert result.error_codes == ["XDSMetadataVersionError"]


def test_previous_version_must_be_the_latest(
    client: XdsClient, patient_id: str, engine, server
) -> None:
    from tests.conftest import snapshot

    doc = Doc(b"one")
    lid = registered(client, patient_id, doc)
    before = snapshot(engine, server.store_dir)
    result = client.update(new_version(patient_id, doc, lid, previous="7"))
    assert result.error_codes == ["XDSMetadataVersionError"]
    missing = client.update(new_version(patient_id, doc, lid, previous=None))
    assert missing.error_codes == ["XDSMetadataUpdateOperationError"]
    wrong_slot = client.update(
        new_version(patient_id, doc, lid, extra_link_slot=("OriginalStatus", v.APPROVED))
    )
    assert wrong_slot.error_codes == ["XDSMetadataUpdateOperationError"]
    assert snapshot(engine, server.store_dir) == before


def test_an_update_cannot_change_the_document(client: XdsClient, patient_id: str) -> None:
    doc = Doc(b"the bytes")
    lid = registered(client, patient_id, doc)
    changed = Doc(b"other bytes", unique_id=doc.unique_id)
    result = client.update(new_version(patient_id, changed, lid))
    assert result.status == "Failure"
    assert set(result.error_codes) == {"XDSMetadataUpdateOperationError"}


def test_concurrent_updates_of_one_version(client_for, patient_id: str) -> None:
    doc = Doc(b"contended")
    lid = registered(client_for(patient_id), patient_id, doc)
    results: list[str] = []

    def update() -> None:
        result = client_for(patient_id).update(
            new_version(patient_id, Doc(b"contended", unique_id=doc.unique_id), lid)
        )
        results.append(result.status)

    threads = [threading.Thread(target=update) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["Failure", "Failure", "Failure", "Success"]


@pytest.mark.parametrize(
    ("new", "back"),
    [(v.DEPRECATED, v.APPROVED), (v.ARCHIVED, v.APPROVED), (v.DELETED, None)],
)
def test_availability_status(client: XdsClient, patient_id: str, new: str, back) -> None:
    doc = Doc(b"status changes")
    uuid = registered(client, patient_id, doc)
    result = client.update(
        status_update(patient_id, uuid, {"OriginalStatus": v.APPROVED, "NewStatus": new})
    )
    assert result.status == "Success", result.errors
    if new == v.DELETED:
        # The DMP's deletion: the document leaves every view, even a query for Deleted.
        assert versions(client, doc) == []
        deleted = client.stored_query(
            v.FIND_DOCUMENTS,
            {"$XDSDocumentEntryPatientId": patient_id, "$XDSDocumentEntryStatus": [new]},
        )
        assert deleted.status == "Success" and deleted.objects == []
        return
    assert versions(client, doc)[0].get("status") == new
    approved = client.stored_query(
        v.FIND_DOCUMENTS,
        {"$XDSDocumentEntryPatientId": patient_id, "$XDSDocumentEntryStatus": [v.APPROVED]},
    )
    assert approved.objects == []
    with_status = client.stored_query(
        v.FIND_DOCUMENTS,
        {"$XDSDocumentEntryPatientId": patient_id, "$XDSDocumentEntryStatus": [new]},
    )
    assert [o.get("id") for o in with_status.objects] == [uuid]
    if back:
        again = client.update(
            status_update(patient_id, uuid, {"OriginalStatus": new, "NewStatus": back})
        )
        assert again.status == "Success", again.errors
        assert versions(client, doc)[0].get("status") == back


@pytest.mark.parametrize(
    "slots",
    [
        {"OriginalStatus": v.APPROVED, "NewStatus": v.DEPRECATED, "Invalid": "x"},
        {"NewStatus": v.DEPRECATED},
        {"OriginalStatus": v.APPROVED},
        {"OriginalStatus": v.APPROVED, "NewStatus": "urn:example:Nope"},
        {"OriginalStatus": "urn:example:Nope", "NewStatus": v.DEPRECATED},
        {"OriginalStatus": v.APPROVED, "NewStatus": v.APPROVED},
        {"OriginalStatus": v.DEPRECATED, "NewStatus": v.APPROVED},
    ],
    ids=["invalid-slot", "no-original", "no-new", "bad-new", "bad-original", "same", "not-current"],
)
def test_malformed_status_updates(
    client: XdsClient, patient_id: str, slots, engine, server
) -> None:
    from tests.conftest import snapshot

    uuid = registered(client, patient_id, Doc(b"stays approved"))
    before = snapshot(engine, server.store_dir)
    result = client.update(status_update(patient_id, uuid, slots))
    assert result.status == "Failure"
    assert set(result.error_codes) == {"XDSMetadataUpdateOperationError"}
    assert snapshot(engine, server.store_dir) == before


@pytest.mark.usefixtures("unchanged")
def test_status_update_of_an_unknown_object(client: XdsClient, patient_id: str) -> None:
    result = client.update(
        status_update(
            patient_id,
            "urn:uuid:0e0e0e0e-1111-4222-8333-444444444444",
            {"OriginalStatus": v.APPROVED, "NewStatus": v.DEPRECATED},
        )
    )
    assert result.error_codes == ["UnresolvedReferenceException"]


def test_invalid_association_type_in_an_update(client: XdsClient, patient_id: str) -> None:
    a, b = Doc(b"a"), Doc(b"b")
    ua, ub = registered(client, patient_id, a), registered(client, patient_id, b)
    request = submit_objects_request(patient_id, [], registry_side=True)
    object_list = request.find(f"{{{RIM}}}RegistryObjectList")
    etree.SubElement(
        object_list,
        f"{{{RIM}}}Association",
        id="bad",
        associationType="urn:ihe:iti:2007:AssociationType:APND_TXFM",
        sourceObject=ub,
        targetObject=ua,
    )
    result = client.update(request)
    assert result.status == "Failure"
    assert "XDSRegistryMetadataError" in result.error_codes
