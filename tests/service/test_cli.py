"""The ``dmp-xds`` command as an operator uses it."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.fixtures.metadata import Doc, new_patient_id, submit_objects_request


def dmp_xds(*args: str, database_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DMP_XDS_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "dmp_xds.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_patient_create_beside_a_serving_instance(client_for, database_url) -> None:
    pid = new_patient_id()
    client = client_for(pid)
    doc = Doc(b"before the patient exists")
    before = client.provide_and_register(
        submit_objects_request(pid, [doc]), {"Document01": doc.content}
    )
    assert [e.code for e in before.errors] == ["XDSUnknownPatientId"]

    done = dmp_xds("patient", "create", pid, database_url=database_url)
    assert done.returncode == 0, done.stderr
    assert "registered" in done.stdout
    again = dmp_xds("patient", "create", pid, database_url=database_url)
    assert "already registered" in again.stdout

    after = client.provide_and_register(
        submit_objects_request(pid, [doc]), {"Document01": doc.content}
    )
    assert after.status == "Success", after.errors


def test_patient_create_rejects_malformed_ids(database_url) -> None:
    done = dmp_xds("patient", "create", "not-a-cx", database_url=database_url)
    assert done.returncode == 2
    assert "CX" in done.stderr or "patient id" in done.stderr
