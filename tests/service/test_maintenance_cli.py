"""``dmp-xds gc`` and ``dmp-xds verify`` as an operator runs them, beside the serving instance,
on its document store and the registry filled by real submissions."""

from __future__ import annotations

import os
import time
from pathlib import Path

from dmp_xds.client.xds import XdsClient
from dmp_xds.repository.store import FileStore
from tests.conftest import REPOSITORY_UNIQUE_ID, Server
from tests.fixtures.cli import run_cli
from tests.fixtures.clinical_documents import cda_doc
from tests.fixtures.metadata import Doc, submit_objects_request

DAY = 24 * 3600


def dmp_xds(server: Server, database_url: str, *args: str, **env: str):
    environment = {
        "DMP_XDS_DATABASE_URL": database_url,
        "DMP_XDS_DATA_DIR": str(server.data_dir),
        "DMP_XDS_REPOSITORY_UNIQUE_ID": REPOSITORY_UNIQUE_ID,
        **env,
    }
    return run_cli(*args, env=environment)


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_gc_collects_old_orphans_only(
    client: XdsClient, patient_id: str, server: Server, database_url: str
) -> None:
    doc = cda_doc("cr-bio", patient_id)
    result = client.provide_and_register(
        submit_objects_request(patient_id, [doc]), {"Document01": doc.content}
    )
    assert result.status == "Success", result.errors
    store = FileStore(server.store_dir)
    kept = store.put_bytes(doc.content).sha256  # the submitted bytes: already stored
    age(store.path_of(kept), 30 * DAY)  # old, but referenced
    old = store.put_bytes(os.urandom(1000) + b"old orphan").sha256
    age(store.path_of(old), 2 * DAY)
    young = store.put_bytes(os.urandom(1000) + b"young orphan").sha256

    dry = dmp_xds(server, database_url, "gc", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would remove {old} (1010 bytes)" in dry.stdout
    assert "dry run: nothing was removed" in dry.stdout
    assert store.exists(old)

    done = dmp_xds(server, database_url, "gc", DMP_XDS_GC_GRACE_S=str(DAY))
    assert done.returncode == 0, done.stderr
    assert f"removed {old} (1010 bytes)" in done.stdout
    assert young not in done.stdout and kept not in done.stdout
    assert not store.exists(old)
    assert store.exists(young) and store.exists(kept)
    got = client.retrieve([(REPOSITORY_UNIQUE_ID, doc.unique_id)])
    assert got.documents[0].content == doc.content


def test_verify_reports_corrupt_and_missing_documents(
    client: XdsClient, patient_id: str, server: Server, database_url: str
) -> None:
    docs = [Doc(os.urandom(500)), Doc(os.urandom(600)), Doc(os.urandom(700))]
    result = client.provide_and_register(
        submit_objects_request(patient_id, docs), {d.symbolic_id: d.content for d in docs}
    )
    assert result.status == "Success", result.errors
    store = FileStore(server.store_dir)
    corrupt_key = store.put_bytes(docs[0].content).sha256
    missing_key = store.put_bytes(docs[1].content).sha256
    path = store.path_of(corrupt_key)
    path.chmod(0o640)  # stored blobs are read-only
    path.write_bytes(bytes([docs[0].content[0] ^ 0xFF]) + docs[0].content[1:])  # always differs
    store.delete(missing_key)
    try:
        found = dmp_xds(server, database_url, "verify")
        assert found.returncode == 1, found.stdout + found.stderr
        assert (
            f"CORRUPT  {corrupt_key} DocumentEntry uniqueIds: {docs[0].unique_id}" in found.stdout
        )
        assert (
            f"MISSING  {missing_key} DocumentEntry uniqueIds: {docs[1].unique_id}" in found.stdout
        )
        assert docs[2].unique_id not in found.stdout
        assert patient_id.split("^")[0] not in found.stdout + found.stderr
        assert "DAMAGED" in found.stdout
    finally:  # put the session's store back as it was
        path.unlink()
        store.put_bytes(docs[0].content)
        store.put_bytes(docs[1].content)
    healed = dmp_xds(server, database_url, "verify")
    assert corrupt_key not in healed.stdout and missing_key not in healed.stdout
