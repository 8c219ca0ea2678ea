"""``dmp-xds purge`` as the host's operator runs it, beside the serving instance, on documents
registered through the real server: refusals change nothing, a purge erases every version, the
associations and emptied SubmissionSets, and the bytes unless another entry shares them; the
trail keeps the fact, with ids only.

How a document came to be Deleted is ITI-57's business (tested with its rights elsewhere):
here the status is set in the database, which is what a deletion leaves behind.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import Engine, text

from dmp_xds.client.xds import XdsClient
from dmp_xds.repository.store import FileStore
from tests.conftest import REPOSITORY_UNIQUE_ID, Server, snapshot
from tests.fixtures.cli import run_cli
from tests.fixtures.metadata import Doc, submit_objects_request
from tests.fixtures.records import new_record
from tests.fixtures.updates import mark_deleted

HOST_PHYSICIAN = "810000000001"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
AIR = {"authentication_mode": "INDIRECTE_RENFORCEE"}


def purge(server: Server, database_url: str, *args: str, authorised: str = HOST_PHYSICIAN):
    env = {
        "DMP_XDS_DATABASE_URL": database_url,
        "DMP_XDS_DATA_DIR": str(server.data_dir),
        "DMP_XDS_PURGE_AUTHORISED": authorised,
    }
    return run_cli("purge", *args, env=env)


@pytest.fixture
def patient(engine: Engine) -> str:
    return new_record(engine)


@pytest.fixture
def client(client_for, patient: str) -> XdsClient:
    return client_for(patient, vihf=AIR)


def submit(client: XdsClient, patient: str, docs: list[Doc]) -> None:
    result = client.provide_and_register(
        submit_objects_request(patient, docs), {d.symbolic_id: d.content for d in docs}
    )
    assert result.status == "Success", result.errors


def entry_rows(engine: Engine, unique_id: str) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT entry_uuid, version FROM document_entry WHERE unique_id = :u"),
            {"u": unique_id},
        ).all()


def purge_events(engine: Engine, unique_id: str) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT transaction, outcome, actor_id, patient_id, objects, detail "
                "FROM audit_event WHERE transaction = 'purge' AND :u = ANY(objects) "
                "ORDER BY event_id"
            ),
            {"u": unique_id},
        ).all()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_version(client: XdsClient, patient: str, doc: Doc, lid: str) -> None:
    """ITI-57: a second version of ``doc`` (same document, another title)."""
    doc.symbolic_id = "Update01"
    request = submit_objects_request(patient, [doc], registry_side=True)
    entry = request.find(f".//{{{RIM}}}ExtrinsicObject")
    entry.set("lid", lid)
    entry.find(f"{{{RIM}}}Name/{{{RIM}}}LocalizedString").set("value", "Titre révisé")
    link = request.find(f".//{{{RIM}}}Association")
    previous = etree.Element(f"{{{RIM}}}Slot", name="PreviousVersion")
    etree.SubElement(
        etree.SubElement(previous, f"{{{RIM}}}ValueList"), f"{{{RIM}}}Value"
    ).text = "1"
    link.insert(1, previous)
    result = client.update(request)
    assert result.status == "Success", result.errors


def test_a_document_not_deleted_is_not_purged(
    client, patient, server, database_url, engine
) -> None:
    doc = Doc(os.urandom(300))
    submit(client, patient, [doc])
    before = snapshot(engine, server.store_dir)
    done = purge(
        server,
        database_url,
        "--patient",
        patient,
        "--document",
        doc.unique_id,
        "--by",
        HOST_PHYSICIAN,
        "--yes",
    )
    assert done.returncode == 1
    assert "version 1 is Approved" in done.stderr
    assert snapshot(engine, server.store_dir) == before
    [event] = purge_events(engine, doc.unique_id)
    assert (event.outcome, event.actor_id) == ("refused", HOST_PHYSICIAN)


def test_only_a_listed_physician_may_purge(client, patient, server, database_url, engine) -> None:
    doc = Doc(os.urandom(300))
    submit(client, patient, [doc])
    mark_deleted(engine, doc.unique_id)
    before = snapshot(engine, server.store_dir)
    args = ("--patient", patient, "--document", doc.unique_id, "--yes")
    other = purge(server, database_url, *args, "--by", "810000000099")
    assert other.returncode == 1
    assert "810000000099 is not authorised" in other.stderr
    nobody = purge(server, database_url, *args, "--by", HOST_PHYSICIAN, authorised="")
    assert nobody.returncode == 1 and "no professional is authorised" in nobody.stderr
    unknown = purge(
        server,
        database_url,
        "--patient",
        patient,
        "--document",
        "1.2.3.9",
        "--by",
        HOST_PHYSICIAN,
        "--yes",
    )
    assert unknown.returncode == 1 and "no document 1.2.3.9" in unknown.stderr
    assert snapshot(engine, server.store_dir) == before
    assert [e.outcome for e in purge_events(engine, doc.unique_id)] == ["refused", "refused"]


def test_purge_erases_every_version_and_the_bytes(
    client, patient, server, database_url, engine
) -> None:
    doc, kept = Doc(os.urandom(400)), Doc(os.urandom(500))
    submit(client, patient, [doc, kept])
    [(lid, _)] = entry_rows(engine, doc.unique_id)
    new_version(client, patient, Doc(doc.content, unique_id=doc.unique_id), f"urn:uuid:{lid}")
    store = FileStore(server.store_dir)
    assert len(entry_rows(engine, doc.unique_id)) == 2 and store.exists(sha256(doc.content))
    mark_deleted(engine, doc.unique_id)
    with engine.connect() as conn:
        sets_before = conn.execute(text("SELECT count(*) FROM submission_set")).scalar_one()
    args = ("--patient", patient, "--document", doc.unique_id, "--by", HOST_PHYSICIAN)

    asked = purge(server, database_url, *args)  # no --yes, no terminal: shows and stops
    assert asked.returncode == 1
    # ITI-57 deleted the current version; the one it superseded stays Deprecated
    assert f"document {doc.unique_id} (v1 Deprecated, v2 Deleted)" in asked.stdout
    assert "nothing purged" in asked.stderr
    assert len(entry_rows(engine, doc.unique_id)) == 2

    done = purge(server, database_url, *args, "--yes")
    assert done.returncode == 0, done.stderr
    assert "2 DocumentEntry" in done.stdout and "1 SubmissionSet" in done.stdout
    assert f"document bytes {sha256(doc.content)}: deleted" in done.stdout
    assert entry_rows(engine, doc.unique_id) == []
    assert not store.exists(sha256(doc.content))
    with engine.connect() as conn:
        # The update's SubmissionSet went (it held nothing else), the first one stays.
        sets_after = conn.execute(text("SELECT count(*) FROM submission_set")).scalar_one()
        assert sets_after == sets_before - 1
        dangling = conn.execute(
            text(
                "SELECT count(*) FROM association a WHERE NOT EXISTS (SELECT 1 FROM "
                "object_locator l WHERE l.entry_uuid = a.target_uuid)"
            )
        ).scalar_one()
        assert dangling == 0
        freed = conn.execute(
            text("SELECT count(*) FROM unique_id_locator WHERE unique_id = :u"),
            {"u": doc.unique_id},
        ).scalar_one()
        assert freed == 0
    got = client.retrieve([(REPOSITORY_UNIQUE_ID, kept.unique_id)])
    assert got.documents[0].content == kept.content
    [event] = purge_events(engine, doc.unique_id)
    assert (event.outcome, event.actor_id, event.patient_id) == (
        "success",
        HOST_PHYSICIAN,
        patient,
    )
    assert event.detail.startswith("purged ")
    assert "Titre" not in str(tuple(event)) and "Document" not in str(event.objects)

    again = purge(server, database_url, *args, "--yes")
    assert again.returncode == 1 and f"no document {doc.unique_id}" in again.stderr


def test_bytes_another_entry_shares_are_kept(client, patient, server, database_url, engine) -> None:
    content = os.urandom(600)
    gone, stays = Doc(content), Doc(content)
    submit(client, patient, [gone, stays])
    mark_deleted(engine, gone.unique_id)
    done = purge(
        server,
        database_url,
        "--patient",
        patient,
        "--document",
        gone.unique_id,
        "--by",
        HOST_PHYSICIAN,
        "--yes",
    )
    assert done.returncode == 0, done.stderr
    assert "kept (another entry references them)" in done.stdout
    assert entry_rows(engine, gone.unique_id) == []
    assert FileStore(server.store_dir).exists(sha256(content))
    got = client.retrieve([(REPOSITORY_UNIQUE_ID, stays.unique_id)])
    assert got.documents[0].content == content
