"""The ``dmp-xds`` command as an operator uses it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures.cli import run_cli
from tests.fixtures.metadata import Doc, new_patient_id, submit_objects_request


def dmp_xds(*args: str, database_url: str) -> subprocess.CompletedProcess:
    return run_cli(*args, env={"DMP_XDS_DATABASE_URL": database_url})


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


def test_serve_with_no_configuration_then_ctrl_c(tmp_path_factory) -> None:
    """`dmp-xds serve` alone: embedded PostgreSQL under the data directory, migrations, the
    endpoint URLs printed; Ctrl-C stops the server and the database cleanly."""
    import shutil
    import signal
    import tempfile
    import time
    from pathlib import Path

    import requests

    from tests.conftest import free_port

    # Outside pytest's 0700 temp root: pgserver runs PostgreSQL as its own user under root.
    data_dir = Path(tempfile.mkdtemp(prefix="dmp-xds-serve-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DMP_XDS_DATABASE_URL"}
    env |= {"DMP_XDS_DATA_DIR": str(data_dir), "DMP_XDS_LISTEN": f"127.0.0.1:{port}"}
    log = data_dir / "out.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dmp_xds.cli", "serve"], env=env, stdout=out, stderr=out
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                        break
                except requests.RequestException:
                    time.sleep(0.2)
            else:
                raise AssertionError(log.read_text())
            printed = log.read_text()
            assert f"http://127.0.0.1:{port}/xds/repository" in printed
            assert f"http://127.0.0.1:{port}/xds/registry" in printed
            assert (data_dir / "pg" / "postmaster.pid").exists()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert not (data_dir / "pg" / "postmaster.pid").exists(), "PostgreSQL still running"
    shutil.rmtree(data_dir, ignore_errors=True)


def test_bench_runs_a_scenario_from_the_checkout(tmp_path) -> None:
    """``dmp-xds bench`` drives the benchmarks of a source checkout: a small batch scenario
    runs end to end (its own embedded PostgreSQL and server) and writes its JSON."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dmp_xds.cli",
            "bench",
            "batch",
            "--documents",
            "20",
            "--repeat",
            "1",
            "--workers",
            "1",
        ],
        cwd=Path(__file__).resolve().parents[2],
        env={k: v for k, v in os.environ.items() if k != "DMP_XDS_DATABASE_URL"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ITI-41 (XdsClient)" in done.stdout and "written:" in done.stdout
    listed = run_cli("bench", env={})
    assert "submit" in listed.stdout + listed.stderr
