"""Document relationships (RPLC, APND, XFRM, XFRM_RPLC, signs) and folders over the real
server; the NIST registry tests 11993, 11994, 12002, 12084, 15806, 21000 in our own words."""

from __future__ import annotations

import threading
import uuid

import pytest

from dmp_xds.client.xds import XdsClient
from dmp_xds.metadata import vocabulary as v
from tests.fixtures.metadata import (
    APND,
    HAS_MEMBER,
    RPLC,
    SIGNS,
    XFRM,
    XFRM_RPLC,
    Doc,
    association,
    folder,
    submit_objects_request,
    unique_oid,
)
from tests.fixtures.records import open_record


def register(client: XdsClient, pid: str, docs: list[Doc], extra: str = "", **kw):
    return client.register(
        submit_objects_request(pid, docs, registry_side=True, extra_objects=extra, **kw)
    )


def entry(client: XdsClient, doc: Doc):
    found = client.stored_query(v.GET_DOCUMENTS, {"$XDSDocumentEntryUniqueId": [doc.unique_id]})
    assert found.status == "Success", found.errors
    [obj] = found.objects
    return obj


def slot(element, name: str) -> list[str]:
    for s in element.iterfind("{*}Slot"):
        if s.get("name") == name:
            return [val.text or "" for val in s.iterfind("{*}ValueList/{*}Value")]
    return []


@pytest.fixture
def original(client: XdsClient, patient_id: str) -> tuple[Doc, str]:
    doc = Doc(b"original")
    assert register(client, patient_id, [doc]).status == "Success"
    return doc, entry(client, doc).get("id")


@pytest.mark.parametrize(
    ("kind", "deprecates"), [(RPLC, True), (XFRM_RPLC, True), (APND, False), (XFRM, False)]
)
def test_relationship(client, patient_id, original, kind: str, deprecates: bool) -> None:
    doc, uuid = original
    new = Doc(b"new version")
    new.symbolic_id = "New"
    result = register(client, patient_id, [new], association("rel", kind, "New", uuid))
    assert result.status == "Success", result.errors
    assert entry(client, doc).get("status") == (v.DEPRECATED if deprecates else v.APPROVED)
    assert entry(client, new).get("status") == v.APPROVED
    related = client.stored_query(
        v.GET_RELATED_DOCUMENTS, {"$XDSDocumentEntryEntryUUID": uuid, "$AssociationTypes": [kind]}
    )
    assert len(related.objects) == 3  # both documents and the association


def test_signs_may_target_a_document_of_the_same_submission(client, patient_id) -> None:
    document, signature = Doc(b"signed document"), Doc(b"<Signature/>", mime_type="text/xml")
    document.symbolic_id, signature.symbolic_id = "Doc", "Sig"
    result = register(
        client, patient_id, [document, signature], association("s", SIGNS, "Sig", "Doc")
    )
    assert result.status == "Success", result.errors


@pytest.mark.parametrize("kind", [RPLC, APND, XFRM, XFRM_RPLC])
def test_no_relationship_to_a_deprecated_document(client, patient_id, original, kind) -> None:
    _, uuid = original
    first = Doc(b"first replacement")
    first.symbolic_id = "First"
    assert register(client, patient_id, [first], association("r", RPLC, "First", uuid)).status == (
        "Success"
    )
    late = Doc(b"too late")
    late.symbolic_id = "Late"
    result = register(client, patient_id, [late], association("r", kind, "Late", uuid))
    assert result.status == "Failure"
    assert result.error_codes == ["XDSRegistryDeprecatedDocumentError"]


def test_replacing_an_unknown_document_fails(client, patient_id) -> None:
    doc = Doc(b"replaces nothing")
    doc.symbolic_id = "New"
    unknown = "urn:uuid:00000000-1111-4222-8333-444444444444"
    result = register(client, patient_id, [doc], association("r", RPLC, "New", unknown))
    assert result.status == "Failure"
    assert result.error_codes == ["UnresolvedReferenceException"]


def test_concurrent_replacements_exactly_one_wins(client_for, patient_id, original) -> None:
    _, uuid = original
    results: list[str] = []

    def replace(n: int) -> None:
        doc = Doc(f"replacement {n}".encode())
        doc.symbolic_id = "New"
        client = client_for(patient_id)
        results.append(
            register(client, patient_id, [doc], association("r", RPLC, "New", uuid)).status
        )

    threads = [threading.Thread(target=replace, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["Failure", "Failure", "Failure", "Success"]


def test_folder_lifecycle(client, patient_id) -> None:
    """Create a folder with a document, add an existing document later (lastUpdateTime moves),
    replace a member (the replacement joins the folder)."""
    first, second = Doc(b"in folder"), Doc(b"added later")
    first.symbolic_id = "First"
    folder_uid = unique_oid(2)
    created = register(
        client,
        patient_id,
        [first],
        folder("F", patient_id, unique_id=folder_uid)
        + association("ss-f", HAS_MEMBER, "SubmissionSet01", "F")
        + association("f-d", HAS_MEMBER, "F", "First"),
    )
    assert created.status == "Success", created.errors
    assert register(client, patient_id, [second]).status == "Success"
    [fol] = client.stored_query(v.GET_FOLDERS, {"$XDSFolderUniqueId": [folder_uid]}).objects
    folder_uuid, first_update = fol.get("id"), slot(fol, "lastUpdateTime")
    assert first_update

    second_uuid = entry(client, second).get("id")
    added = client.register(
        submit_objects_request(
            patient_id,
            [],
            registry_side=True,
            extra_objects=association("f-d2", HAS_MEMBER, folder_uuid, second_uuid)
            + association("ss-a", HAS_MEMBER, "SubmissionSet01", "f-d2"),
        )
    )
    assert added.status == "Success", added.errors
    contents = client.stored_query(v.GET_FOLDER_AND_CONTENTS, {"$XDSFolderEntryUUID": folder_uuid})
    docs = [o for o in contents.objects if o.tag.endswith("ExtrinsicObject")]
    assert len(docs) == 2
    [fol] = [o for o in contents.objects if o.tag.endswith("RegistryPackage")]
    assert slot(fol, "lastUpdateTime") >= first_update

    replacement = Doc(b"replacement of the first")
    replacement.symbolic_id = "Repl"
    first_uuid = entry(client, first).get("id")
    assert (
        register(
            client, patient_id, [replacement], association("r", RPLC, "Repl", first_uuid)
        ).status
        == "Success"
    )
    folders = client.stored_query(
        v.GET_FOLDERS_FOR_DOCUMENT, {"$XDSDocumentEntryUniqueId": replacement.unique_id}
    )
    assert [f.get("id") for f in folders.objects] == [folder_uuid]


def test_folder_of_another_patient(client_for, patient_id, engine) -> None:
    from tests.fixtures.metadata import new_patient_id

    other = new_patient_id()
    with engine.begin() as conn:
        open_record(conn, other)
    other_client = client_for(other)
    folder_uid = unique_oid(2)
    made = register(
        other_client,
        other,
        [],
        folder("F", other, unique_id=folder_uid)
        + association("ss-f", HAS_MEMBER, "SubmissionSet01", "F"),
    )
    assert made.status == "Success", made.errors
    [fol] = other_client.stored_query(v.GET_FOLDERS, {"$XDSFolderUniqueId": [folder_uid]}).objects
    doc = Doc(b"wrong folder")
    doc.symbolic_id = "D"
    client = client_for(patient_id)
    result = register(client, patient_id, [doc], association("f-d", HAS_MEMBER, fol.get("id"), "D"))
    assert result.status == "Failure"
    assert "XDSPatientIdDoesNotMatch" in result.error_codes


def test_submission_is_all_or_nothing(client, patient_id) -> None:
    good, bad = Doc(b"good"), Doc(b"bad")
    request = submit_objects_request(patient_id, [good, bad], registry_side=True)
    for s in request.iter("{*}Slot"):
        if s.get("name") == "repositoryUniqueId" and s.getparent().get("id") == "Document02":
            s.getparent().remove(s)
    result = client.register(request)
    assert result.status == "Failure"
    assert result.error_codes == ["XDSRegistryMetadataError"]
    missing = client.stored_query(v.GET_DOCUMENTS, {"$XDSDocumentEntryUniqueId": [good.unique_id]})
    assert missing.objects == []


def test_pre_assigned_entry_uuid_cannot_be_registered_twice(client, patient_id) -> None:
    fixed = f"urn:uuid:{uuid.uuid4()}"
    doc = Doc(b"with a fixed uuid")
    doc.symbolic_id = fixed
    assert register(client, patient_id, [doc]).status == "Success"
    assert entry(client, doc).get("id") == fixed
    again = Doc(b"same uuid, new uniqueId")
    again.symbolic_id = fixed
    result = register(client, patient_id, [again])
    assert result.status == "Failure"
    assert result.error_codes == ["XDSRegistryMetadataError"]


def test_submission_set_cannot_contain_itself(client, patient_id) -> None:
    result = register(
        client,
        patient_id,
        [Doc(b"x")],
        association("self", HAS_MEMBER, "SubmissionSet01", "SubmissionSet01"),
    )
    assert result.status == "Failure"
    assert "XDSRegistryMetadataError" in result.error_codes
