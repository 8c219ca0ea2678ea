"""``load-synthetic`` writes rows that the real server answers from exactly as from submitted
ones: FindDocuments, GetDocuments (by uniqueId and entryUUID), GetSubmissionSetAndContents,
and the uniqueId checks of a new submission. A small load against the session database."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import Engine, func, select

from dmp_xds.metadata import vocabulary as v
from dmp_xds.registry import tables as t
from dmp_xds.registry.synthetic import LoadReport, document_counts, load_synthetic
from tests.fixtures.metadata import Doc, submit_objects_request
from tests.fixtures.records import DEFAULT_READER, professional_actor


@pytest.fixture(scope="module")
def loaded(engine: Engine) -> LoadReport:
    return load_synthetic(
        engine,
        300,
        12,
        heavy_patients=2,
        heavy_documents=50,
        seed=3,
        chunk_documents=100,
        authorise=[professional_actor(DEFAULT_READER).actor_id],
    )


def _external_id(element, scheme: str) -> str | None:
    for ext in element.iter("{*}ExternalIdentifier"):
        if ext.get("identificationScheme") == scheme:
            return ext.get("value")
    return None


def test_counts_are_consistent(loaded: LoadReport, engine: Engine) -> None:
    assert (loaded.patients, loaded.documents) == (12, 300)
    assert len(loaded.heavy_patient_ids) == 2
    with engine.connect() as conn:
        keys = select(t.patient.c.patient_key).where(
            t.patient.c.patient_id.in_(loaded.heavy_patient_ids)
        )
        per_patient = conn.execute(
            select(func.count())
            .select_from(t.document_entry)
            .where(t.document_entry.c.patient_key.in_(keys))
        ).scalar_one()
        assert per_patient == 100
        # Every document, submission set and association is located; every uniqueId too.
        uuids = {
            *conn.execute(select(t.document_entry.c.entry_uuid)).scalars(),
            *conn.execute(select(t.submission_set.c.entry_uuid)).scalars(),
            *conn.execute(select(t.association.c.entry_uuid)).scalars(),
        }
        located = set(conn.execute(select(t.object_locator.c.entry_uuid)).scalars())
        assert uuids <= located


def test_document_counts_keep_the_total() -> None:
    rng = random.Random(1)
    counts = document_counts(10_000, 500, 10, 50, rng)
    assert sum(counts) == 10_000 and len(counts) == 500
    assert counts[:10] == [50] * 10 and min(counts) >= 1


def test_find_documents_over_loaded_rows(loaded: LoadReport, client_for) -> None:
    patient = loaded.heavy_patient_ids[0]
    found = client_for(patient).stored_query(
        v.FIND_DOCUMENTS,
        {"$XDSDocumentEntryPatientId": patient, "$XDSDocumentEntryStatus": [v.APPROVED]},
    )
    assert found.status == "Success", found.errors
    assert len(found.objects) == 50
    for obj in found.objects:
        assert obj.get("status") == v.APPROVED
        assert _external_id(obj, "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427") == patient
    # Newest first, as the server orders them.
    times = [
        next(s for s in o.iter("{*}Slot") if s.get("name") == "creationTime")[0][0].text
        for o in found.objects
    ]
    assert times == sorted(times, reverse=True)


def test_get_documents_and_package_over_loaded_rows(loaded: LoadReport, client_for) -> None:
    patient, unique_id = loaded.sample_documents[0] if loaded.sample_documents else (None, None)
    if patient is None:  # a 1 % sample of 300 documents may be empty: take one from a query
        patient = loaded.heavy_patient_ids[1]
        found = client_for(patient).stored_query(
            v.FIND_DOCUMENTS,
            {"$XDSDocumentEntryPatientId": patient, "$XDSDocumentEntryStatus": [v.APPROVED]},
        )
        unique_id = _external_id(found.objects[0], "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab")
    client = client_for(patient)
    got = client.stored_query(v.GET_DOCUMENTS, {"$XDSDocumentEntryUniqueId": [unique_id]})
    assert got.status == "Success", got.errors
    assert len(got.objects) == 1
    entry_uuid = got.objects[0].get("id")
    by_uuid = client.stored_query(v.GET_DOCUMENTS, {"$XDSDocumentEntryEntryUUID": [entry_uuid]})
    assert [o.get("id") for o in by_uuid.objects] == [entry_uuid]
    sets = client.stored_query(v.GET_SUBMISSION_SETS, {"$uuid": [entry_uuid]})
    assert sets.status == "Success", sets.errors
    package = [o for o in sets.objects if o.tag.endswith("RegistryPackage")]
    assert len(package) == 1
    contents = client.stored_query(
        v.GET_SUBMISSION_SET_AND_CONTENTS, {"$XDSSubmissionSetEntryUUID": package[0].get("id")}
    )
    assert contents.status == "Success", contents.errors
    assert entry_uuid in {o.get("id") for o in contents.objects}


def test_loaded_unique_ids_are_taken(loaded: LoadReport, client_for) -> None:
    """A submission reusing a loaded uniqueId is refused: the locators are really filled."""
    patient = loaded.heavy_patient_ids[0]
    client = client_for(patient)
    found = client.stored_query(
        v.FIND_DOCUMENTS,
        {"$XDSDocumentEntryPatientId": patient, "$XDSDocumentEntryStatus": [v.APPROVED]},
    )
    taken = _external_id(found.objects[0], "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab")
    doc = Doc(b"synthetic clash", unique_id=taken)
    result = client.register(submit_objects_request(patient, [doc], registry_side=True))
    assert result.status == "Failure"
    assert set(result.error_codes) & {"XDSDuplicateUniqueIdInRegistry", "XDSNonIdenticalHash"}
