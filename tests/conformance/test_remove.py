"""ITI-62 Remove Metadata over the real server and PostgreSQL: the NIST registry tests 30000 and
30001 (and the rules of 30002-30008) in our own words, folders, replacement chains, ITI-57
versions, another patient's objects, who may purge, only deleted documents, and what becomes
of uniqueIds and bytes.

In the DMP a purge erases documents that were deleted first (ITI-57 status update to
Deleted, by whoever the rights matrix lets delete them): the documents these tests remove are
marked so directly (tests/fixtures/updates.mark_deleted), one test goes through ITI-57. What
the record holds is read from the database, since deleted documents leave every query."""

from __future__ import annotations

import hashlib
import threading
import uuid

import pytest
from lxml import etree
from sqlalchemy import Engine, text

from dmp_xds.client.transport import SoapClient
from dmp_xds.client.xds import XdsClient, remove_objects_request
from dmp_xds.metadata import vocabulary as v
from dmp_xds.metadata.ebrim import resolve_symbolic_ids
from dmp_xds.registry import patient_lock
from dmp_xds.registry.register import patient_key
from dmp_xds.soap.envelope import SoapVersion
from tests.conftest import REPOSITORY_UNIQUE_ID, snapshot, start_server, stop_server
from tests.fixtures.metadata import (
    HAS_MEMBER,
    RPLC,
    Doc,
    association,
    folder,
    new_patient_id,
    submit_objects_request,
    unique_oid,
)
from tests.fixtures.records import open_record
from tests.fixtures.updates import mark_deleted, status_update

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
WSA = "http://www.w3.org/2005/08/addressing"
UNKNOWN = "urn:uuid:11111111-2222-3333-4444-999999999999"  # the id NIST 30000 sends
NOT_AUTHORISED = "not authorised to remove metadata"
SINGLE = ("SubmissionSet01", "Document01", "assoc-Document01")  # what the submit fixture makes


def submit(
    client: XdsClient, pid: str, docs: list[Doc], extra: str = "", **kw: object
) -> dict[str, str]:
    """ITI-42 with every symbolic id replaced by a UUID first, so that the test knows the
    entryUUIDs (ITI-42 does not answer them); returns symbolic id -> entryUUID."""
    request = submit_objects_request(pid, docs, registry_side=True, extra_objects=extra, **kw)
    ids = resolve_symbolic_ids(request.find(f"{{{RIM}}}RegistryObjectList"))
    result = client.register(request)
    assert result.status == "Success", result.errors
    return ids


def remove(client: XdsClient, *entry_uuids: str):
    return client.remove(remove_objects_request(entry_uuids))


def stored(engine: Engine, pid: str) -> set[str]:
    """The entryUUIDs of everything the patient's record holds, associations included."""
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT l.entry_uuid FROM object_locator l JOIN patient p USING (patient_key) "
                "WHERE p.patient_id = :p"
            ),
            {"p": pid},
        ).scalars()
        return {f"urn:uuid:{u}" for u in found}


def document_status(engine: Engine, doc: Doc) -> list[str]:
    """The statuses of a document's versions, oldest first."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT status FROM document_entry WHERE unique_id = :u ORDER BY version"),
                {"u": doc.unique_id},
            ).scalars()
        )


@pytest.fixture
def single(client: XdsClient, patient_id: str, engine: Engine) -> dict[str, str]:
    """NIST 30001/submit: one SubmissionSet with one DocumentEntry, deleted in the DMP."""
    doc = Doc(b"single document")
    ids = submit(client, patient_id, [doc])
    mark_deleted(engine, doc.unique_id)
    return ids


# --- NIST 30000 and 30001 ------------------------------------------------------------------------


@pytest.mark.usefixtures("unchanged")
def test_unknown_id_is_an_unresolved_reference(client: XdsClient) -> None:
    result = remove(client, UNKNOWN)
    assert result.status == "Failure"
    assert result.error_codes == ["UnresolvedReferenceException"]
    assert result.errors[0].location == UNKNOWN


def test_remove_submission_set_then_document_then_everything(
    client: XdsClient, patient_id: str, single: dict[str, str], engine: Engine, server
) -> None:
    ss, doc, member = single["SubmissionSet01"], single["Document01"], single["assoc-Document01"]
    before = snapshot(engine, server.store_dir)

    only_set = remove(client, ss)
    assert only_set.status == "Failure"
    assert only_set.error_codes == ["ReferencesExistException"]
    assert only_set.errors[0].location == ss
    assert member in only_set.errors[0].context  # names the association that still points

    # Nothing remaining points at the document or its HasMember, but the SubmissionSet would
    # be left describing a submission of nothing.
    doc_and_member = remove(client, doc, member)
    assert doc_and_member.status == "Failure"
    assert doc_and_member.error_codes == ["XDSUnreferencedObjectException"]
    assert doc_and_member.errors[0].location == ss
    assert snapshot(engine, server.store_dir) == before
    assert stored(engine, patient_id) == {ss, doc, member}

    everything = remove(client, doc, member, ss)
    assert everything.status == "Success", everything.errors
    assert everything.errors == []
    assert stored(engine, patient_id) == set()
    contents = client.stored_query(
        v.GET_SUBMISSION_SET_AND_CONTENTS, {"$XDSSubmissionSetEntryUUID": ss}
    )
    assert contents.status == "Success"
    assert contents.objects == []


def test_every_error_at_once(client: XdsClient, single: dict[str, str], engine, server) -> None:
    before = snapshot(engine, server.store_dir)
    result = remove(client, single["SubmissionSet01"], UNKNOWN, "Document01")
    assert result.status == "Failure"
    assert sorted(result.error_codes) == [
        "ReferencesExistException",
        "UnresolvedReferenceException",
        "UnresolvedReferenceException",  # a symbolic id is never a registry object
    ]
    assert snapshot(engine, server.store_dir) == before


def test_ids_are_matched_whatever_their_case_and_listed_twice(
    client: XdsClient, patient_id: str, single: dict[str, str], engine: Engine
) -> None:
    ids = [single["Document01"].upper().replace("URN:UUID:", "urn:uuid:")]
    ids += [single["assoc-Document01"], single["SubmissionSet01"], single["SubmissionSet01"]]
    result = remove(client, *ids)
    assert result.status == "Success", result.errors
    assert stored(engine, patient_id) == set()


# --- folders -----------------------------------------------------------------------------------


def test_remove_a_folder_with_its_associations(
    client: XdsClient, patient_id: str, engine: Engine
) -> None:
    folder_uid = unique_oid(2)
    ids = submit(
        client,
        patient_id,
        [Doc(b"filed document")],
        folder("F", patient_id, unique_id=folder_uid)
        + association("ss-f", HAS_MEMBER, "SubmissionSet01", "F")
        + association("f-d", HAS_MEMBER, "F", "Document01"),
    )
    fol, ss_f, f_d = ids["F"], ids["ss-f"], ids["f-d"]

    alone = remove(client, fol)
    assert alone.error_codes == ["ReferencesExistException"]
    assert ss_f in alone.errors[0].context and f_d in alone.errors[0].context

    result = remove(client, fol, ss_f, f_d)
    assert result.status == "Success", result.errors
    assert client.stored_query(v.GET_FOLDERS, {"$XDSFolderUniqueId": [folder_uid]}).objects == []
    folders = client.stored_query(
        v.GET_FOLDERS_FOR_DOCUMENT, {"$XDSDocumentEntryEntryUUID": ids["Document01"]}
    )
    assert folders.objects == []
    # The document and its submission stay, untouched.
    assert stored(engine, patient_id) == {
        ids["SubmissionSet01"],
        ids["Document01"],
        ids["assoc-Document01"],
    }
    # The folder's uniqueId is free again.
    again = submit(
        client,
        patient_id,
        [],
        folder("F", patient_id, unique_id=folder_uid)
        + association("ss-f", HAS_MEMBER, "SubmissionSet01", "F"),
    )
    assert again["F"] != fol


def test_a_document_cannot_leave_its_submission_set_alone(
    client: XdsClient, patient_id: str
) -> None:
    """Removing only the SubmissionSet's HasMember would leave the document in no submission;
    removing a folder membership leaves the folder in its submission (NIST 30003, step 3)."""
    ids = submit(
        client,
        patient_id,
        [Doc(b"filed document")],
        folder("F", patient_id)
        + association("ss-f", HAS_MEMBER, "SubmissionSet01", "F")
        + association("f-d", HAS_MEMBER, "F", "Document01"),
    )
    member = remove(client, ids["assoc-Document01"])
    assert member.status == "Failure"
    assert member.error_codes == ["XDSUnreferencedObjectException"]
    assert member.errors[0].location == ids["Document01"]

    filed = remove(client, ids["f-d"])
    assert filed.status == "Success", filed.errors
    contents = client.stored_query(v.GET_FOLDER_AND_CONTENTS, {"$XDSFolderEntryUUID": ids["F"]})
    assert [o.get("id") for o in contents.objects] == [ids["F"]]


# --- replacement chains and versions -----------------------------------------------------------


def test_remove_a_replaced_document_and_its_replacement_chain(
    client: XdsClient, patient_id: str, engine: Engine
) -> None:
    original = Doc(b"original")
    first = submit(client, patient_id, [original])
    replacement = Doc(b"replacement")
    replacement.symbolic_id = "Repl"
    second = submit(
        client, patient_id, [replacement], association("r", RPLC, "Repl", first["Document01"])
    )
    assert document_status(engine, original) == [v.DEPRECATED]
    # Replaced is not deleted: the original is deleted first.
    mark_deleted(engine, original.unique_id)
    original_set = [first["Document01"], first["assoc-Document01"], first["SubmissionSet01"]]

    # The RPLC still points at the original: it must go too (NIST 30005, 30006).
    kept_link = remove(client, *original_set)
    assert kept_link.error_codes == ["ReferencesExistException"]
    assert second["r"] in kept_link.errors[0].context

    result = remove(client, *original_set, second["r"])
    assert result.status == "Success", result.errors
    assert document_status(engine, original) == []
    assert document_status(engine, replacement) == [v.APPROVED]
    related = client.stored_query(
        v.GET_RELATED_DOCUMENTS,
        {"$XDSDocumentEntryEntryUUID": second["Repl"], "$AssociationTypes": [RPLC]},
    )
    assert related.objects == []
    # The original's uniqueId is free again: the same document can be registered anew.
    assert submit(client, patient_id, [Doc(b"original", unique_id=original.unique_id)])


def test_removing_the_replacement_leaves_the_original_deprecated(
    client: XdsClient, patient_id: str, engine: Engine
) -> None:
    """ITI-62 removes objects and changes nothing else (no status is restored)."""
    original = Doc(b"original")
    first = submit(client, patient_id, [original])
    replacement = Doc(b"replacement")
    replacement.symbolic_id = "Repl"
    second = submit(
        client, patient_id, [replacement], association("r", RPLC, "Repl", first["Document01"])
    )
    mark_deleted(engine, replacement.unique_id)
    result = remove(
        client, second["Repl"], second["assoc-Repl"], second["SubmissionSet01"], second["r"]
    )
    assert result.status == "Success", result.errors
    assert document_status(engine, original) == [v.DEPRECATED]
    assert document_status(engine, replacement) == []


def _update_request(pid: str, doc: Doc, lid: str) -> tuple[etree._Element, dict[str, str]]:
    """ITI-57: version 2 of the DocumentEntry ``lid`` (same uniqueId and bytes)."""
    request = submit_objects_request(pid, [doc], registry_side=True)
    entry = request.find(f".//{{{RIM}}}ExtrinsicObject")
    entry.set("lid", lid)
    link = request.find(f".//{{{RIM}}}Association")
    slot = etree.Element(f"{{{RIM}}}Slot", name="PreviousVersion")
    etree.SubElement(etree.SubElement(slot, f"{{{RIM}}}ValueList"), f"{{{RIM}}}Value").text = "1"
    link.insert(1, slot)
    ids = resolve_symbolic_ids(request.find(f"{{{RIM}}}RegistryObjectList"))
    return request, ids


def test_a_unique_id_stays_taken_while_one_version_remains(
    client: XdsClient, patient_id: str, engine: Engine
) -> None:
    doc = Doc(b"versioned")
    first = submit(client, patient_id, [doc])
    update, second = _update_request(patient_id, doc, first["Document01"])
    updated = client.update(update)
    assert updated.status == "Success", updated.errors
    assert document_status(engine, doc) == [v.DEPRECATED, v.APPROVED]
    mark_deleted(engine, doc.unique_id)

    result = remove(
        client, second["Document01"], second["assoc-Document01"], second["SubmissionSet01"]
    )
    assert result.status == "Success", result.errors
    assert document_status(engine, doc) == [v.DEPRECATED]  # version 1, as it was
    taken = client.register(
        submit_objects_request(
            patient_id, [Doc(b"versioned", unique_id=doc.unique_id)], registry_side=True
        )
    )
    assert taken.error_codes == ["XDSDuplicateUniqueIdInRegistry"]

    # Version 1 is now the document's latest, and not deleted: refused until it is.
    kept = remove(client, first["Document01"], first["assoc-Document01"], first["SubmissionSet01"])
    assert kept.error_codes == ["XDSRegistryError"]
    assert "version 1 is Deprecated" in kept.errors[0].context
    mark_deleted(engine, doc.unique_id)
    last = remove(client, first["Document01"], first["assoc-Document01"], first["SubmissionSet01"])
    assert last.status == "Success", last.errors
    assert submit(client, patient_id, [Doc(b"versioned", unique_id=doc.unique_id)])


# --- the patient, and who may purge ------------------------------------------------------------


@pytest.fixture
def other_patients_document(client_for, engine: Engine) -> dict[str, str]:
    other = new_patient_id()
    with engine.begin() as conn:
        open_record(conn, other)
    return submit(client_for(other), other, [Doc(b"someone else's document")])


def test_another_patients_objects_are_unknown(
    client: XdsClient, other_patients_document: dict[str, str], engine: Engine, server
) -> None:
    ids = other_patients_document
    before = snapshot(engine, server.store_dir)
    result = remove(client, *(ids[k] for k in SINGLE))
    assert result.status == "Failure"
    assert result.error_codes == ["UnresolvedReferenceException"] * 3
    assert snapshot(engine, server.store_dir) == before
    # The same answer as for an id that exists nowhere: no oracle over other records.
    unknown = remove(client, UNKNOWN)
    answers = {e.context.replace(e.location, "<id>") for e in result.errors + unknown.errors}
    assert len(answers) == 1


@pytest.mark.parametrize(
    ("vihf", "why"),
    [
        ({"professional": "infirmier"}, "899900000029 is not authorised"),
        # A physician the server does not list.
        ({"name_id": "899900000094"}, "899900000094 is not authorised"),
        # The listed physician, but in an emergency access.
        ({"access_mode": "bris_de_glace"}, "in bris_de_glace access mode"),
    ],
    ids=["nurse", "unlisted-physician", "break-glass"],
)
def test_only_the_listed_physicians_may_purge(
    client_for, patient_id: str, single: dict[str, str], engine, server, vihf: dict, why: str
) -> None:
    before = snapshot(engine, server.store_dir)
    refused = remove(client_for(patient_id, vihf=vihf), *(single[k] for k in SINGLE))
    assert refused.status == "Failure"
    assert refused.error_codes == ["XDSRegistryError"]
    assert NOT_AUTHORISED in refused.errors[0].context
    assert why in refused.errors[0].context
    assert snapshot(engine, server.store_dir) == before


@pytest.mark.usefixtures("unchanged")
def test_a_refused_caller_learns_nothing_about_the_ids(client_for, patient_id: str) -> None:
    nurse = client_for(patient_id, vihf={"professional": "infirmier"})
    refused = remove(nurse, UNKNOWN)
    assert refused.error_codes == ["XDSRegistryError"]
    assert NOT_AUTHORISED in refused.errors[0].context
    assert UNKNOWN not in refused.errors[0].context


def test_nobody_may_purge_by_default(
    database_url: str, tmp_path, test_pki, engine: Engine, patient_id: str
) -> None:
    """A server started without DMP_XDS_PURGE_AUTHORISED refuses every ITI-62, even from the
    physician the session's server lets purge, and changes nothing."""
    env = {**test_pki.server_env(), "DMP_XDS_PURGE_AUTHORISED": ""}
    default = start_server(database_url, tmp_path / "default", env)
    try:
        client = XdsClient(default.url, header_factory=test_pki.vihf_headers(patient_id))
        ids = submit(client, patient_id, [Doc(b"kept")])
        before = snapshot(engine, default.store_dir)
        refused = remove(client, *(ids[k] for k in SINGLE))
        assert refused.error_codes == ["XDSRegistryError"]
        assert "no professional is authorised" in refused.errors[0].context
        assert snapshot(engine, default.store_dir) == before
    finally:
        stop_server(default)


# --- the request itself ------------------------------------------------------------------------


def _request(xml: str) -> etree._Element:
    return etree.fromstring(
        f'<lcm:RemoveObjectsRequest xmlns:lcm="{LCM}" xmlns:rim="{RIM}"{xml}'
        "</lcm:RemoveObjectsRequest>"
    )


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    ("xml", "says"),
    [
        # Schema: an element RemoveObjectsRequest does not have, an ObjectRef without its id.
        (
            f'><rim:ObjectRefList><rim:ObjectRef id="{UNKNOWN}"/></rim:ObjectRefList><rim:Bogus/>',
            "schema",
        ),
        ("><rim:ObjectRefList><rim:ObjectRef/></rim:ObjectRefList>", "schema"),
        # ITI-62 forms the registry refuses with a reason.
        (
            '><rim:AdhocQuery id="urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"/>'
            f'<rim:ObjectRefList><rim:ObjectRef id="{UNKNOWN}"/></rim:ObjectRefList>',
            "AdhocQuery",
        ),
        ("><rim:ObjectRefList/>", "empty"),
        (">", "no ObjectRefList"),
        (
            ' deletionScope="urn:oasis:names:tc:ebxml-regrep:DeletionScopeType:'
            f'DeleteRepositoryItemOnly"><rim:ObjectRefList><rim:ObjectRef id="{UNKNOWN}"/>'
            "</rim:ObjectRefList>",
            "deletionScope",
        ),
    ],
    ids=["unknown-element", "ref-without-id", "adhoc-query", "empty", "no-list", "scope"],
)
def test_malformed_requests(client: XdsClient, xml: str, says: str) -> None:
    result = client.remove(_request(xml))
    assert result.status == "Failure"
    assert set(result.error_codes) == {"XDSRegistryError"}
    assert any(says in e.context for e in result.errors), result.errors


@pytest.mark.usefixtures("unchanged")
def test_another_payload_under_the_remove_action(client: XdsClient, patient_id: str) -> None:
    result = client.remove(submit_objects_request(patient_id, [Doc(b"x")], registry_side=True))
    assert result.error_codes == ["XDSRegistryError"]
    assert "expected RemoveObjectsRequest" in result.errors[0].context


def test_a_soap11_client_without_action_is_routed_by_its_payload(
    server, test_pki, patient_id: str, single: dict[str, str]
) -> None:
    soap = SoapClient(server.url, soap_version=SoapVersion.SOAP11)
    request = remove_objects_request([single[k] for k in SINGLE])
    envelope = soap.envelope("/xds/registry", "", request, test_pki.vihf_headers(patient_id)())
    action = envelope.find(f".//{{{WSA}}}Action")
    action.getparent().remove(action)
    reply = soap.send_envelope("/xds/registry", "", envelope)
    assert reply.fault is None
    assert reply.payload.tag == f"{{{RS}}}RegistryResponse"
    assert reply.payload.get("status") == v.RESPONSE_SUCCESS


def test_a_deletion_scope_of_delete_all_is_the_default(
    client: XdsClient, patient_id: str, single: dict[str, str], engine: Engine
) -> None:
    refs = "".join(f'<rim:ObjectRef id="{single[k]}"/>' for k in SINGLE)
    result = client.remove(
        _request(
            ' deletionScope="urn:oasis:names:tc:ebxml-regrep:DeletionScopeType:DeleteAll">'
            f"<rim:ObjectRefList>{refs}</rim:ObjectRefList>"
        )
    )
    assert result.status == "Success", result.errors
    assert stored(engine, patient_id) == set()


# --- after the removal: bytes, trail, concurrency ----------------------------------------------


def test_a_document_not_deleted_is_not_removed(
    client: XdsClient, patient_id: str, engine: Engine, server
) -> None:
    """ITI-62 erases for good only what was deleted first (ITI-57): an approved or archived
    document, or one replaced, is refused with XDSRegistryError naming it and its version,
    every such one at once, and nothing at all changes (all or nothing)."""
    approved, archived, deleted = Doc(b"still shown"), Doc(b"archived"), Doc(b"deleted")
    ids = [submit(client, patient_id, [d]) for d in (approved, archived, deleted)]
    mark_deleted(engine, deleted.unique_id)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE document_entry SET status = :s WHERE unique_id = :u"),
            {"s": v.ARCHIVED, "u": archived.unique_id},
        )
    before = snapshot(engine, server.store_dir)
    result = remove(client, *(i[k] for i in ids for k in SINGLE))
    assert result.status == "Failure"
    assert result.error_codes == ["XDSRegistryError", "XDSRegistryError"]
    says = {e.location: e.context for e in result.errors}
    assert "version 1 is Approved" in says[ids[0]["Document01"]]
    assert "version 1 is Archived" in says[ids[1]["Document01"]]
    assert all("only a document whose latest version is Deleted" in c for c in says.values())
    assert snapshot(engine, server.store_dir) == before
    assert document_status(engine, deleted) == [v.DELETED]


def test_a_document_deleted_with_iti57_is_purged_with_its_bytes(
    client: XdsClient, patient_id: str, engine: Engine, server
) -> None:
    """The whole way: the author deletes the document (ITI-57, which records a status-update
    submission), the hosting physician purges it and what its deletion added; the bytes go
    after the commit."""
    doc = Doc(b"deleted, then purged " + uuid.uuid4().bytes)
    request = submit_objects_request(patient_id, [doc])
    ids = resolve_symbolic_ids(request.find(f"{{{RIM}}}RegistryObjectList"))
    assert client.provide_and_register(request, {ids["Document01"]: doc.content}).status == (
        "Success"
    )
    sha256 = hashlib.sha256(doc.content).hexdigest()
    deletion = status_update(
        patient_id, ids["Document01"], {"OriginalStatus": v.APPROVED, "NewStatus": v.DELETED}
    )
    update_ids = resolve_symbolic_ids(deletion.find(f"{{{RIM}}}RegistryObjectList"))
    assert client.update(deletion).status == "Success"
    assert sha256 in snapshot(engine, server.store_dir).blobs

    result = remove(
        client,
        *(ids[k] for k in SINGLE),
        update_ids["SubmissionSet01"],
        update_ids["status-change"],
    )
    assert result.status == "Success", result.errors
    assert stored(engine, patient_id) == set()
    assert sha256 not in snapshot(engine, server.store_dir).blobs


def test_bytes_another_entry_shares_are_kept(
    client: XdsClient, patient_id: str, engine: Engine, server
) -> None:
    content = b"the same bytes twice " + uuid.uuid4().bytes
    gone, stays = Doc(content), Doc(content)
    request = submit_objects_request(patient_id, [gone, stays])
    ids = resolve_symbolic_ids(request.find(f"{{{RIM}}}RegistryObjectList"))
    stored_ = client.provide_and_register(
        request, {ids["Document01"]: content, ids["Document02"]: content}
    )
    assert stored_.status == "Success", stored_.errors
    mark_deleted(engine, gone.unique_id)
    result = remove(client, ids["Document01"], ids["assoc-Document01"])
    assert result.status == "Success", result.errors
    assert hashlib.sha256(content).hexdigest() in snapshot(engine, server.store_dir).blobs
    got = client.retrieve([(REPOSITORY_UNIQUE_ID, stays.unique_id)])
    assert got.documents[0].content == content


def test_the_removal_is_in_the_audit_trail(
    client: XdsClient, single: dict[str, str], engine: Engine
) -> None:
    result = remove(client, *(single[k] for k in SINGLE))
    assert result.status == "Success", result.errors
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT outcome, actor_id, objects FROM audit_event "
                "WHERE transaction = 'ITI-62' AND :doc = ANY(objects)"
            ),
            {"doc": single["Document01"]},
        ).one()
    assert row.outcome == "success"
    assert row.actor_id == "899900000011"
    assert single["SubmissionSet01"] in row.objects


def test_a_removal_waits_for_a_submission_in_flight(
    client: XdsClient, patient_id: str, single: dict[str, str], engine: Engine
) -> None:
    """A submission holds the record's shared lock from its first check to its commit; the
    removal's exclusive one waits, so it cannot delete what the submission is linking to."""
    ids = [single[k] for k in SINGLE]
    results = []
    with engine.begin() as conn:
        patient_lock.hold_for_write(conn, patient_key(conn, patient_id))
        worker = threading.Thread(target=lambda: results.append(remove(client, *ids)))
        worker.start()
        worker.join(1.0)
        assert worker.is_alive(), "the removal did not wait for the submission's lock"
    worker.join(30)
    assert [r.status for r in results] == ["Success"]
