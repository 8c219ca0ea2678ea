"""``dmp-xds import``, ``submit``, ``query`` and ``retrieve`` as an integration engine and an
operator run them: the real command against the real server and database.

Documents are rendered from tests/fixtures/cda for fresh patients, each with an open DMP record
on which the acting physician is authorised (what the XDS endpoints require of a submission and
of a read), in reinforced indirect mode.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import Engine, text

from dmp_xds.security.pki import TestPki
from tests.conftest import Server, free_port
from tests.fixtures.cli import client_env, run_cli
from tests.fixtures.clinical_documents import header_for, render
from tests.fixtures.metadata import new_patient_id
from tests.fixtures.records import new_record

PDF_BYTES = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
# doc-patient.xml carries no encounter nor performer: these two come from its sidecar.
PATIENT_DOC_SIDECAR = {
    "healthcareFacilityTypeCode": {
        "code": "EXP_PATIENT",
        "codingScheme": "1.2.250.1.213.1.1.4.6",
        "displayName": "Patient",
    },
    "practiceSettingCode": "PATIENT^^1.2.250.1.213.1.1.4.9",
}


@pytest.fixture(scope="module")
def env(server: Server, test_pki: TestPki) -> dict[str, str]:
    return client_env(server, test_pki)


def dmp_xds(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, env=env)


def import_json(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    done = dmp_xds(env, "import", *args, "--json")
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def write_cda(folder: Path, name: str, kind: str, patient_id: str, **header: Any) -> str:
    """A fixture CDA for ``patient_id`` at ``folder/name``; returns its uniqueId."""
    h = header_for(kind, patient_id, **header)
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render(kind, h))
    if kind == "doc-patient":
        sidecar(path, PATIENT_DOC_SIDECAR)
    return h.document_root


def sidecar(path: Path, values: dict[str, Any]) -> None:
    path.with_name(path.name + ".meta.json").write_text(json.dumps(values), encoding="utf-8")


KINDS = ("ldl-ses", "cr-bio", "cr-consultation", "cr-imagerie-pdf", "doc-patient")


def mixed_folder(folder: Path, patients: list[str], per_patient: int) -> dict[str, str]:
    """``per_patient`` documents of every kind in turn for each patient: uniqueId -> patient."""
    owners = {}
    for p, patient in enumerate(patients):
        for n in range(per_patient):
            kind = KINDS[n % len(KINDS)]
            uid = write_cda(folder, f"p{p}/{n:03d}-{kind}.xml", kind, patient)
            owners[uid] = patient
    return owners


def rows_per_unique_id(engine: Engine, unique_ids: list[str]) -> Counter[str]:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT unique_id FROM document_entry WHERE unique_id = ANY(:u)"),
            {"u": unique_ids},
        ).scalars()
        return Counter(found)


def submission_sets(engine: Engine, patient_id: str) -> list[int]:
    """The number of documents in each SubmissionSet of the patient."""
    with engine.connect() as conn:
        return sorted(
            conn.execute(
                text(
                    "SELECT count(a.entry_uuid) FROM submission_set s JOIN patient p USING "
                    "(patient_key) LEFT JOIN association a ON a.source_uuid = s.entry_uuid "
                    "AND a.patient_key = s.patient_key WHERE p.patient_id = :p "
                    "GROUP BY s.entry_uuid"
                ),
                {"p": patient_id},
            ).scalars()
        )


def iti41_outcomes(engine: Engine, patient_id: str) -> list[tuple[str, list[str]]]:
    with engine.connect() as conn:
        return [
            (r.outcome, list(r.error_codes))
            for r in conn.execute(
                text(
                    "SELECT outcome, error_codes FROM audit_event WHERE patient_id = :p "
                    "AND transaction = 'ITI-41' ORDER BY event_id"
                ),
                {"p": patient_id},
            )
        ]


def journal_lines(path: Path) -> list[dict[str, Any]]:
    """The journal's records (a torn line, as the importer does, is left out)."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


# --- import ---------------------------------------------------------------------------------


def test_import_a_folder_then_run_again(tmp_path: Path, env, engine, test_pki) -> None:
    """Two patients, five kinds of CDA (a PDF nonXMLBody among them), batches of 3: every
    document once, one patient per submission set; a second run sends nothing."""
    patients = [new_record(engine), new_record(engine)]
    owners = mixed_folder(tmp_path, patients, 7)
    (tmp_path / "README.txt~").write_text("not a document")

    started = time.monotonic()
    code, summary = import_json(env, str(tmp_path), "--batch-size", "3")
    elapsed = time.monotonic() - started
    assert code == 0, summary
    assert summary["counts"] == {"accepted": 14, "rejected": 0, "skipped": 1, "pending": 0}
    assert summary["batches"] == 6
    assert {d["uniqueId"] for d in summary["accepted"]} == set(owners)
    assert rows_per_unique_id(engine, list(owners)) == Counter(dict.fromkeys(owners, 1))
    for patient in patients:
        assert submission_sets(engine, patient) == [1, 3, 3]
    print(f"imported 14 documents in {elapsed:.2f} s (command included)")

    code, again = import_json(env, str(tmp_path), "--batch-size", "3")
    assert code == 0
    assert again["batches"] == 0
    assert again["counts"]["skipped"] == 15
    assert {tuple(d["reasons"]) for d in again["skipped"] if d["uniqueId"]} == {
        ("already imported (journal)",)
    }


def test_killed_import_resumes_and_sends_nothing_twice(
    tmp_path: Path, env, engine, test_pki
) -> None:
    patient = new_record(engine)
    owners = mixed_folder(tmp_path, [patient], 16)
    journal = tmp_path / ".dmp-xds-import.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "dmp_xds.cli", "import", str(tmp_path), "--batch-size", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if journal.exists() and journal.read_text().count('"type": "result"') >= 2:
                break
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(30)
    first = journal_lines(journal)
    accepted_first = {u for r in first if r["type"] == "result" for u in r["accepted"]}
    assert 0 < len(accepted_first) < len(owners), "the kill came too late to test a resume"

    code, summary = import_json(env, str(tmp_path), "--batch-size", "2")
    assert code == 0, summary
    skipped = {d["uniqueId"] for d in summary["skipped"]}
    accepted = {d["uniqueId"] for d in summary["accepted"]}
    assert skipped == accepted_first
    assert skipped | accepted == set(owners) and not skipped & accepted
    assert rows_per_unique_id(engine, list(owners)) == Counter(dict.fromkeys(owners, 1))
    # No ITI-41 of the resumed run met a document already registered.
    assert all(
        "XDSDuplicateUniqueIdInRegistry" not in codes
        for _, codes in iti41_outcomes(engine, patient)
    )


def test_unanswered_batch_is_looked_up_before_anything_is_sent(
    tmp_path: Path, env, engine, test_pki
) -> None:
    """The process died after the server registered a batch but before the answer reached
    the journal: the rerun finds the batch in the registry (ITI-18) and sends nothing."""
    patient = new_record(engine)
    owners = mixed_folder(tmp_path, [patient], 4)
    code, _ = import_json(env, str(tmp_path), "--batch-size", "2")
    assert code == 0
    journal = tmp_path / ".dmp-xds-import.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    assert json.loads(lines[-1])["type"] == "result"
    lost = set(json.loads(lines[-1])["accepted"])
    journal.write_text("".join(lines[:-1]) + lines[-1][:20])  # torn while being written
    calls_before = len(iti41_outcomes(engine, patient))

    code, summary = import_json(env, str(tmp_path), "--batch-size", "2")
    assert code == 0, summary
    assert summary["batches"] == 0
    assert {d["uniqueId"] for d in summary["accepted"]} == lost
    assert [d["reasons"] for d in summary["accepted"]] == [
        ["registered by an earlier, unanswered call"]
    ] * 2
    assert len(iti41_outcomes(engine, patient)) == calls_before
    assert rows_per_unique_id(engine, list(owners)) == Counter(dict.fromkeys(owners, 1))
    assert journal_lines(journal)[-1]["type"] == "result"  # the batch is settled now


def test_unreachable_server_stops_the_run_and_a_rerun_resumes(
    tmp_path: Path, env, engine, test_pki
) -> None:
    """No answer at all: the run retries, stops (exit 3) with everything pending and the
    batch in doubt in the journal; the rerun asks the registry, then sends."""
    patient = new_record(engine)
    owners = mixed_folder(tmp_path, [patient], 3)
    down = {**env, "DMP_XDS_URL": f"http://127.0.0.1:{free_port()}"}
    done = dmp_xds(down, "import", str(tmp_path), "--json", "--retries", "1", "--retry-pause", "0")
    assert done.returncode == 3, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert "gave up after 2 attempts: no answer from the server" in summary["aborted"]
    assert summary["counts"] == {"accepted": 0, "rejected": 0, "skipped": 0, "pending": 3}
    records = journal_lines(tmp_path / ".dmp-xds-import.jsonl")
    assert [r["type"] for r in records] == ["sending"]

    code, summary = import_json(env, str(tmp_path))
    assert code == 0, summary
    assert {d["uniqueId"] for d in summary["accepted"]} == set(owners)
    assert rows_per_unique_id(engine, list(owners)) == Counter(dict.fromkeys(owners, 1))
    records = journal_lines(tmp_path / ".dmp-xds-import.jsonl")
    assert [(r["type"], r.get("accepted")) for r in records[1:]] == [
        ("result", []),  # looked up: it had not landed
        ("sending", None),
        ("result", list(owners)),
    ]


def test_zip_with_sidecars_and_a_bare_pdf(tmp_path: Path, env, engine, test_pki) -> None:
    patient = new_record(engine)
    staging = tmp_path / "staging"
    uid_report = write_cda(staging, "lettres/ldl.xml", "ldl-ses", patient)
    sidecar(staging / "lettres/ldl.xml", {"title": "Titre donné par le sidecar"})
    uid_patient = write_cda(staging, "patient/releves.xml", "doc-patient", patient)
    (staging / "scans").mkdir()
    (staging / "scans/ordonnance.pdf").write_bytes(PDF_BYTES)
    sidecar(
        staging / "scans/ordonnance.pdf",
        {
            "patientId": patient,
            "typeCode": "57833-6^^2.16.840.1.113883.6.1",
            "confidentialityCode": ["N^^2.16.840.1.113883.5.25"],
            "healthcareFacilityTypeCode": "SA07^^1.2.250.1.71.4.2.4",
            "practiceSettingCode": "AMBULATOIRE^^1.2.250.1.213.1.1.4.9",
            "languageCode": "fr-FR",
            "creationTime": "20260110080000",
            "author": [{"authorPerson": "810100012345^AUBRAC^Hélène^^^^^^&1.2.250.1.71.4.2.1&ISO"}],
        },
    )
    archive = tmp_path / "lot.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(staging).as_posix())

    code, summary = import_json(env, str(archive))
    assert code == 0, summary["rejected"]
    assert summary["counts"]["accepted"] == 3
    by_name = {d["document"]: d["uniqueId"] for d in summary["accepted"]}
    assert by_name["lettres/ldl.xml"] == uid_report
    assert by_name["patient/releves.xml"] == uid_patient
    pdf_uid = by_name["scans/ordonnance.pdf"]
    assert pdf_uid.startswith("2.25.")
    assert (tmp_path / "lot.zip.dmp-xds-import.jsonl").exists()
    with engine.connect() as conn:
        rows = {
            r.unique_id: r
            for r in conn.execute(
                text(
                    "SELECT unique_id, mime_type, class_code, format_code, facility_code, ebrim "
                    "FROM document_entry WHERE unique_id = ANY(:u)"
                ),
                {"u": list(by_name.values())},
            )
        }
    title = etree.fromstring(rows[uid_report].ebrim).find("{*}Name/{*}LocalizedString")
    assert title.get("value") == "Titre donné par le sidecar"
    assert rows[uid_patient].facility_code == "EXP_PATIENT^^1.2.250.1.213.1.1.4.6"
    pdf = rows[pdf_uid]
    assert (pdf.mime_type, pdf.class_code) == ("application/pdf", "42^^1.2.250.1.213.1.1.4.1")
    assert pdf.format_code == "urn:ihe:iti:xds:2017:mimeTypeSufficient^^1.3.6.1.4.1.19376.1.2.3"


def test_bad_documents_are_reported_and_the_rest_accepted(
    tmp_path: Path, env, engine, test_pki
) -> None:
    patient, other = new_record(engine), new_record(engine)
    no_record = new_patient_id()
    good = [write_cda(tmp_path, f"ok-{n}.xml", KINDS[n], patient) for n in range(4)]
    # The sidecar files it under `patient` while the CDA's recordTarget is `other`: the server
    # refuses that one document of the batch.
    write_cda(tmp_path, "wrong-patient.xml", "cr-bio", other)
    sidecar(tmp_path / "wrong-patient.xml", {"patientId": patient})
    write_cda(tmp_path, "no-record.xml", "cr-bio", no_record)
    (tmp_path / "truncated.xml").write_bytes(
        render("ldl-ses", header_for("ldl-ses", patient))[:900]
    )
    (tmp_path / "bomb.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        '<ClinicalDocument xmlns="urn:hl7-org:v3">&lol2;</ClinicalDocument>'
    )
    unknown_type = ("99999-9", "2.16.840.1.113883.6.1")
    write_cda(tmp_path, "no-class.xml", "cr-consultation", patient, type_code=unknown_type)
    write_cda(tmp_path, "bad-sidecar.xml", "cr-bio", patient)
    sidecar(tmp_path / "bad-sidecar.xml", {"typeCod": "x"})
    (tmp_path / "scan.pdf").write_bytes(PDF_BYTES)  # a bare PDF needs its sidecar

    code, summary = import_json(env, str(tmp_path))
    assert code == 1
    assert {d["uniqueId"] for d in summary["accepted"]} == set(good)
    reasons = {d["document"]: " ".join(d["reasons"]) for d in summary["rejected"]}
    assert set(reasons) == {
        "wrong-patient.xml",
        "no-record.xml",
        "truncated.xml",
        "bomb.xml",
        "no-class.xml",
        "bad-sidecar.xml",
        "scan.pdf",
    }
    assert "XDSRepositoryMetadataError" in reasons["wrong-patient.xml"]
    assert "patientId" in reasons["wrong-patient.xml"]
    assert reasons["truncated.xml"].startswith("not well-formed XML")
    assert "document type declaration" in reasons["bomb.xml"]
    assert "classCode is missing" in reasons["no-class.xml"]
    assert "unknown DocumentEntry attribute 'typeCod'" in reasons["bad-sidecar.xml"]
    assert reasons["scan.pdf"].startswith("no sidecar scan.pdf.meta.json")
    assert patient.split("^")[0] not in json.dumps(summary)  # no patient id in the report
    # The batch with the wrong-patient document failed, the rest of it went again alone.
    assert [o for o, _ in iti41_outcomes(engine, patient)] == ["failure", "success"]
    assert rows_per_unique_id(engine, good) == Counter(dict.fromkeys(good, 1))

    text_run = dmp_xds(env, "import", str(tmp_path))
    assert text_run.returncode == 1
    assert "REJECTED bomb.xml" in text_run.stdout
    assert "accepted  0" in text_run.stdout and "skipped   4" in text_run.stdout


def test_import_refuses_what_it_cannot_use(tmp_path: Path, env) -> None:
    assert dmp_xds(env, "import", str(tmp_path / "absent")).returncode == 2
    no_key = {k: v for k, v in env.items() if k != "DMP_XDS_VIHF_KEY"}
    done = dmp_xds(no_key, "import", str(tmp_path))
    assert done.returncode == 2 and "DMP_XDS_VIHF_KEY" in done.stderr
    not_zip = tmp_path / "lot.zip"
    not_zip.write_bytes(b"PK\x03\x04 not really a zip")
    done = dmp_xds(env, "import", str(not_zip), "--json")
    assert done.returncode == 3, done.stdout + done.stderr


# --- submit, query, retrieve ----------------------------------------------------------------


def test_submit_query_retrieve(tmp_path: Path, env, engine, test_pki: TestPki) -> None:
    patient = new_record(engine)
    uid = write_cda(tmp_path, "cr.xml", "cr-imagerie-pdf", patient)
    path = tmp_path / "cr.xml"

    done = dmp_xds(env, "submit", str(path), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["status"] == "Success"
    again = dmp_xds(env, "submit", str(path))
    assert again.returncode == 1
    assert "XDSDuplicateUniqueIdInRegistry" in again.stdout

    # --pki instead of the DMP_XDS_VIHF_* variables: the same physician of the test PKI.
    bare = {k: v for k, v in env.items() if not k.startswith("DMP_XDS_VIHF_")}
    pki = ["--pki", str(test_pki.directory)]
    found = dmp_xds(bare, "query", "--patient", patient, "--json", *pki)
    assert found.returncode == 0, found.stdout + found.stderr
    objects = json.loads(found.stdout)["objects"]
    assert [(o["uniqueId"], o["status"], o["mimeType"]) for o in objects] == [
        (uid, "Approved", "text/xml")
    ]
    by_uid = dmp_xds(
        env, "query", "--patient", patient, "--query", "GetDocuments", "--unique-id", uid
    )
    assert by_uid.returncode == 0 and f"uniqueId={uid}" in by_uid.stdout

    out = tmp_path / "back.xml"
    got = dmp_xds(env, "retrieve", uid, "--patient", patient, "-o", str(out))
    assert got.returncode == 0, got.stderr
    assert out.read_bytes() == path.read_bytes()
    missing = dmp_xds(env, "retrieve", "1.2.3.4.5", "--patient", patient, "-o", str(out))
    assert missing.returncode == 1 and "XDSDocumentUniqueIdError" in missing.stderr


def test_submit_reports_what_is_missing(tmp_path: Path, env, engine, test_pki) -> None:
    patient = new_record(engine)
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(PDF_BYTES)
    done = dmp_xds(env, "submit", str(pdf), "--patient", patient)
    assert done.returncode == 1
    assert "typeCode is missing" in done.stdout
    assert "set it in the sidecar file" in done.stdout
    junk = tmp_path / "junk.xml"
    junk.write_text("<notCda>well-formed, but not a clinical document</notCda>")
    done = dmp_xds(env, "submit", str(junk))
    assert done.returncode == 1 and "not a CDA R2 document" in done.stdout
