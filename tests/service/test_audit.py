"""The audit trail over the real server: every call, allowed or refused, leaves one event;
writes record theirs in the same transaction; the table is append-only."""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from dmp_xds.client.xds import SoapFaultError, XdsClient
from dmp_xds.metadata import vocabulary as v
from dmp_xds.metadata.datatypes import parse_patient_id
from tests.conftest import REPOSITORY_UNIQUE_ID
from tests.fixtures.metadata import Doc, new_patient_id, submit_objects_request
from tests.fixtures.records import new_record
from tests.fixtures.trail import trail_rows
from tests.fixtures.updates import status_update, versions
from tests.service.test_transport import envelope, post


def test_every_transaction_is_traced(client: XdsClient, patient_id: str, engine) -> None:
    pid = parse_patient_id(patient_id).canonical
    doc = Doc(b"traced document")
    assert (
        client.provide_and_register(
            submit_objects_request(patient_id, [doc]), {"Document01": doc.content}
        ).status
        == "Success"
    )
    found = client.stored_query(
        v.FIND_DOCUMENTS,
        {"$XDSDocumentEntryPatientId": patient_id, "$XDSDocumentEntryStatus": [v.APPROVED]},
    )
    entry_uuid = found.objects[0].get("id")
    assert client.retrieve([(REPOSITORY_UNIQUE_ID, doc.unique_id)]).status == "Success"

    trail = trail_rows(engine, patient_id=pid)
    assert [(e.transaction, e.outcome) for e in trail] == [
        ("ITI-41", "success"),
        ("ITI-18", "success"),
        ("ITI-43", "success"),
    ]
    submit, query, retrieve = trail
    assert entry_uuid in submit.objects
    assert query.objects == [entry_uuid]
    assert retrieve.objects == [doc.unique_id]
    for event in trail:
        assert event.actor_id and event.profession and event.structure_id
        assert event.access_mode == "normal"
        assert event.homologation
        assert event.remote_addr == "127.0.0.1"
        assert event.occurred_at is not None


def test_failed_write_leaves_a_failure_event_and_nothing_else(client_for, engine) -> None:
    unknown = new_patient_id()
    result = client_for(unknown).provide_and_register(
        submit_objects_request(unknown, [Doc(b"x")]), {"Document01": b"x"}
    )
    assert result.status == "Failure"
    [event] = trail_rows(engine, patient_id=parse_patient_id(unknown).canonical)
    assert (event.transaction, event.outcome) == ("ITI-41", "failure")
    assert event.error_codes == ["XDSUnknownPatientId"]
    assert event.objects == []


def test_refused_and_malformed_calls_are_traced(server, engine, client_for, patient_id) -> None:
    unsigned = client_for(patient_id, vihf={"signer": None})
    with pytest.raises(SoapFaultError):
        unsigned.stored_query(v.FIND_DOCUMENTS, {"$XDSDocumentEntryPatientId": patient_id})
    refused = trail_rows(engine, outcome="refused", action=v.ACTION_STORED_QUERY)
    assert refused and refused[-1].actor_id is None and refused[-1].detail

    response = post(server, envelope("<x>"))
    [fault] = trail_rows(engine, request_id=response.headers["X-Request-Id"])
    assert fault.outcome == "fault" and fault.transaction == "unknown"
    assert "<x>" not in (fault.detail or "")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_event SET outcome = 'success'",
        "DELETE FROM audit_event",
        "TRUNCATE audit_event",
    ],
)
def test_the_trail_is_append_only(engine, statement: str) -> None:
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement))


def test_request_id_links_answer_and_event(server, engine) -> None:
    response = requests.post(
        server.url + "/xds/registry",
        data=envelope("<nothing/>", action="urn:example:unknown"),
        headers={"Content-Type": "application/soap+xml"},
        timeout=10,
    )
    [event] = trail_rows(engine, request_id=response.headers["X-Request-Id"])
    assert event.outcome == "fault"


def test_refused_and_failed_reads_and_updates_name_what_they_asked_for(client_for, engine) -> None:
    """A refused or failed ITI-57, Get* query or ITI-43 names in its event the objects the
    request named (entryUUIDs, uniqueIds); a read that answers names what it served."""
    pid = new_record(engine)
    doc = Doc(b"asked for")
    physician = client_for(pid)
    stored = physician.provide_and_register(
        submit_objects_request(pid, [doc]), {"Document01": doc.content}
    )
    assert stored.status == "Success", stored.errors
    [entry] = versions(physician, doc)
    entry_uuid, unknown = entry.get("id"), "1.2.250.1.999.9.9.9"
    stranger = client_for(pid, vihf={"professional": "sage-femme"})  # not authorised

    def last_event(transaction: str):
        return trail_rows(engine, patient_id=pid, transaction=transaction)[-1]

    query = stranger.stored_query(v.GET_DOCUMENTS, {"$XDSDocumentEntryUniqueId": [doc.unique_id]})
    assert query.error_codes == ["DMPAccessDeniedByRightsService"]
    assert last_event("ITI-18").objects == [doc.unique_id]
    read = stranger.retrieve([(REPOSITORY_UNIQUE_ID, doc.unique_id)])
    assert read.error_codes == ["DMPAccessDeniedByRightsService"]
    assert last_event("ITI-43").objects == [doc.unique_id]
    change = stranger.update(
        status_update(pid, entry_uuid, {"OriginalStatus": v.APPROVED, "NewStatus": v.DELETED})
    )
    assert change.status == "Failure"
    event = last_event("ITI-57")
    assert event.outcome == "failure" and entry_uuid in event.objects
    missing = physician.retrieve([(REPOSITORY_UNIQUE_ID, unknown)])
    assert missing.error_codes == ["XDSDocumentUniqueIdError"]
    assert last_event("ITI-43").objects == [unknown]

    # Answered reads name what they served, not what was asked.
    partial = physician.retrieve(
        [(REPOSITORY_UNIQUE_ID, doc.unique_id), (REPOSITORY_UNIQUE_ID, unknown)]
    )
    assert partial.status == "PartialSuccess"
    assert last_event("ITI-43").objects == [doc.unique_id]
    both = physician.stored_query(
        v.GET_DOCUMENTS, {"$XDSDocumentEntryUniqueId": [doc.unique_id, unknown]}
    )
    assert both.status == "Success"
    assert last_event("ITI-18").objects == [entry_uuid]
