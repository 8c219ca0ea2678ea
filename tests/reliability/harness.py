"""What the reliability tests share: servers of their own, submissions whose outcome is tracked,
and the checks that define "nothing lost, nothing half-written".

The invariants (issue 8, DESIGN.md "Atomicity"):
- every acknowledged (Success) document is retrievable byte-identical;
- no registry entry lacks its document bytes;
- a submission set is visible whole or not at all.
They are checked against the database and the store directly (what is really there), and
acknowledged documents additionally through ITI-43 (what a client really gets).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests
from sqlalchemy import Engine, text

from dmp_xds.client.transport import ClientError
from dmp_xds.client.xds import SoapFaultError, XdsClient
from dmp_xds.security.pki import TestPki
from tests.conftest import REPOSITORY_UNIQUE_ID, TRUSTED_PROXIES, Server, start_server
from tests.fixtures.metadata import Doc, new_patient_id, submit_objects_request, unique_oid
from tests.fixtures.records import open_record


def start_own_server(
    database_url: str, data_dir: Path, pki: TestPki, extra_env: dict[str, str] | None = None
) -> Server:
    """A server of the test's own (it may be killed), on the same trust store as the session's."""
    return start_server(
        database_url,
        data_dir,
        {**pki.server_env(), "DMP_XDS_TRUSTED_PROXIES": TRUSTED_PROXIES, **(extra_env or {})},
    )


def new_patient(engine: Engine) -> str:
    pid = new_patient_id()
    with engine.begin() as conn:
        open_record(conn, pid)
    return pid


def client(url: str, pki: TestPki, patient_id: str, *, timeout: float = 30) -> XdsClient:
    headers = pki.vihf_headers(patient_id, authentication_mode="INDIRECTE_RENFORCEE")
    return XdsClient(url, header_factory=headers, timeout=timeout)


@dataclass
class Submission:
    """One ITI-41 attempt and what its client was told."""

    patient_id: str
    docs: list[Doc]
    ss_unique_id: str = field(default_factory=lambda: unique_oid(1))
    outcome: str = "not sent"  # success / failure / fault / no answer
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def random(cls, patient_id: str, rng: random.Random, max_docs: int = 3) -> Submission:
        docs = []
        for _ in range(rng.randint(1, max_docs)):
            size = rng.choice((200, 5_000, 60_000, 300_000))
            docs.append(Doc(rng.randbytes(size)))
        return cls(patient_id, docs)

    def send(self, xds: XdsClient) -> Submission:
        started = time.monotonic()
        request = submit_objects_request(self.patient_id, self.docs, ss_unique_id=self.ss_unique_id)
        try:
            result = xds.provide_and_register(
                request, {d.symbolic_id: d.content for d in self.docs}
            )
            self.outcome = "success" if result.status == "Success" else "failure"
            self.errors = result.error_codes
        except SoapFaultError as exc:
            self.outcome = "fault"
            self.errors = [exc.fault.subcode or exc.fault.code]
        except (requests.RequestException, ClientError, OSError) as exc:
            self.outcome = "no answer"
            self.errors = [type(exc).__name__]
        self.seconds = time.monotonic() - started
        return self


def registered(engine: Engine, unique_ids: Iterable[str]) -> dict[str, str]:
    """document uniqueId -> content_sha256 for the given ids that the registry holds."""
    ids = list(unique_ids)
    if not ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT unique_id, content_sha256 FROM document_entry WHERE unique_id = ANY(:ids)"
            ),
            {"ids": ids},
        ).all()
    return {r.unique_id: r.content_sha256 for r in rows}


def submission_sets(engine: Engine, unique_ids: Iterable[str]) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT unique_id FROM submission_set WHERE unique_id = ANY(:ids)"),
            {"ids": list(unique_ids)},
        ).all()
    return {r.unique_id for r in rows}


def blob_path(store_dir: Path, sha256: str) -> Path:
    return store_dir / "sha256" / sha256[:2] / sha256[2:4] / sha256


def check_invariants(engine: Engine, store_dir: Path, submissions: list[Submission]) -> dict:
    """Assert the three invariants on the database and the store; return counts for reports."""
    sent = [s for s in submissions if s.outcome != "not sent"]
    found = registered(engine, (d.unique_id for s in sent for d in s.docs))
    sets = submission_sets(engine, (s.ss_unique_id for s in sent))
    counts = {"acknowledged": 0, "registered_unacknowledged": 0, "absent": 0}
    for sub in sent:
        # A document is this submission's if its uniqueId is registered with these very bytes
        # (a concurrent submission may own the same uniqueId with other bytes).
        present = [
            d for d in sub.docs if found.get(d.unique_id) == hashlib.sha256(d.content).hexdigest()
        ]
        # All or nothing: documents and their submission set together.
        assert len(present) in (0, len(sub.docs)), f"half submission {sub.ss_unique_id}"
        assert (sub.ss_unique_id in sets) == bool(present), f"set/doc mismatch {sub.ss_unique_id}"
        if sub.outcome == "success":
            assert present, f"acknowledged submission lost: {sub.ss_unique_id}"
            counts["acknowledged"] += 1
        elif present:
            counts["registered_unacknowledged"] += 1  # committed, answer lost: allowed
        else:
            counts["absent"] += 1
        for doc in present:
            # No registry entry without its bytes, and the bytes are the ones sent.
            key = found[doc.unique_id]
            path = blob_path(store_dir, key)
            assert path.is_file(), f"registry entry without its document bytes: {key}"
            assert path.read_bytes() == doc.content
    return counts


def check_retrievable(url: str, pki: TestPki, submissions: list[Submission]) -> int:
    """Every acknowledged document through ITI-43, byte-identical; returns how many."""
    checked = 0
    for sub in submissions:
        if sub.outcome != "success":
            continue
        xds = client(url, pki, sub.patient_id)
        result = xds.retrieve([(REPOSITORY_UNIQUE_ID, d.unique_id) for d in sub.docs])
        assert result.status == "Success", result.errors
        got = {d.document_uid: d.content for d in result.documents}
        for doc in sub.docs:
            assert got[doc.unique_id] == doc.content
            checked += 1
    return checked


def server_pids(server: Server) -> list[int]:
    """The gunicorn master (``serve``'s process) and its workers."""
    try:
        master = psutil.Process(server.process.pid)
        return [master.pid, *(c.pid for c in master.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def rss_bytes(server: Server) -> int:
    total = 0
    for pid in server_pids(server):
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def _kill(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _wait_gone(pids: Iterable[int], timeout: float = 30) -> None:
    """Until each process is gone or a zombie (an orphan's reaper may be slow)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.02)


def crash(server: Server, rng: random.Random) -> str:
    """kill -9 the gunicorn master and its workers, in a random order; returns which.

    ``master-first`` leaves orphaned workers running for a moment (they may still commit the
    request they hold), ``workers-first`` lets the master respawn workers before it dies too.
    """
    master = server.process.pid
    mode = rng.choice(("all", "master-first", "workers-first"))
    seen = set(_children(master))
    if mode == "master-first":
        _kill([master])
        time.sleep(rng.uniform(0, 0.3))
        _kill(seen)
    elif mode == "workers-first":
        _kill(seen)
        time.sleep(rng.uniform(0, 0.3))
        os.kill(master, signal.SIGSTOP)  # frozen: it cannot fork more workers now
        respawned = set(_children(master))
        _kill([master, *respawned])
        seen |= respawned
    else:
        os.kill(master, signal.SIGSTOP)
        seen |= set(_children(master))
        _kill([master, *seen])
    server.process.wait(10)
    _wait_gone(seen)
    return mode
