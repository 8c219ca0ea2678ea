"""Shared fixtures: one real PostgreSQL per test run (embedded pgserver, or the server named by
``DMP_XDS_DATABASE_URL``) and one real server (``dmp-xds serve`` under gunicorn) on a free
loopback port. Nothing of our own is mocked.

Security is on, as always: the session's test PKI (made once, RSA key generation is slow) is
the server's trust store, and ``client_for`` clients sign a fresh VIHF for their patient on
every call."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, text

from dmp_xds.client.xds import XdsClient
from dmp_xds.metadata.xsd import payload_errors
from dmp_xds.registry.database import EmbeddedPostgres, make_engine, migrate
from dmp_xds.security.pki import PATIENT, REPRESENTATIVE, TestPki, init_test_pki
from tests.fixtures.metadata import new_patient_id
from tests.fixtures.records import new_record

REPOSITORY_UNIQUE_ID = "1.2.250.1.999.1.1.1"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``pytest --long``: the full reliability runs (100 crash iterations, a 10-minute soak)
    instead of the quick versions that keep the default ``pytest`` fast."""
    parser.addoption(
        "--long", action="store_true", default=False, help="run long reliability variants"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("DMP_XDS_DATABASE_URL")
    if external:
        migrate(external)
        yield external
        return
    # Not under pytest's private (0700) temp root: when run as root, pgserver runs PostgreSQL as
    # its own system user, which must be able to reach the data directory.
    root = Path(tempfile.mkdtemp(prefix="dmp-xds-test-pg-"))
    pg = EmbeddedPostgres(root / "data")
    url = pg.start()
    migrate(url)
    yield url
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url, pool_size=2)
    yield eng
    eng.dispose()


@dataclass
class Server:
    url: str
    data_dir: Path
    store_dir: Path
    log_path: Path
    process: subprocess.Popen

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    database_url: str,
    data_dir: Path,
    extra_env: dict[str, str] | None = None,
    *,
    tls_ca: Path | None = None,
) -> Server:
    """Start ``dmp-xds serve``; with ``tls_ca`` it serves HTTPS (TLS env vars in
    ``extra_env``) and the health check trusts that CA."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DMP_XDS_DATABASE_URL": database_url,
        "DMP_XDS_LISTEN": f"127.0.0.1:{port}",
        "DMP_XDS_DATA_DIR": str(data_dir),
        "DMP_XDS_WORKERS": "2",
        "DMP_XDS_REPOSITORY_UNIQUE_ID": REPOSITORY_UNIQUE_ID,
        **(extra_env or {}),
    }
    log_path = data_dir / "server.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "dmp_xds.cli", "serve"],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = f"{'https' if tls_ca else 'http'}://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            verify: bool | str = str(tls_ca) if tls_ca else True
            if requests.get(url + "/health", timeout=1, verify=verify).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
    return Server(url, data_dir, data_dir / "documents", log_path, process)


def stop_server(server: Server) -> int:
    server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        return server.process.wait(10)


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """The session's test PKI: CA (the trust store), institution, professionals, TLS server."""
    return init_test_pki(tmp_path_factory.mktemp("pki"))


# Loopback is the trusted proxy of the test server (DIRECTE through a forwarded certificate).
TRUSTED_PROXIES = "127.0.0.1"
# The test professional the server lets purge metadata (ITI-62); the client_for default, so
# that conformance tests remove as themselves and use another professional to be refused.
PURGING_PROFESSIONAL = "medecin"


@pytest.fixture(scope="session")
def server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, test_pki: TestPki
) -> Iterator[Server]:
    srv = start_server(
        database_url,
        tmp_path_factory.mktemp("server"),
        {
            **test_pki.server_env(),
            "DMP_XDS_TRUSTED_PROXIES": TRUSTED_PROXIES,
            "DMP_XDS_PURGE_AUTHORISED": test_pki.professional(PURGING_PROFESSIONAL).name_id,
        },
    )
    yield srv
    stop_server(srv)


@pytest.fixture
def patient_id(engine: Engine) -> str:
    """A fresh patient with an open DMP record on which the default test physician is
    authorised (tests/fixtures/records.py)."""
    return new_record(engine)


ClientFactory = Callable[..., XdsClient]


@pytest.fixture(scope="session")
def client_for(server: Server, test_pki: TestPki) -> ClientFactory:
    """Build an XDS client acting for a patient: every call carries a freshly signed VIHF
    (new assertion ID) naming that patient.

    ``vihf`` (a dict) changes what the VIHF says, e.g. ``{"professional": "infirmier",
    "access_mode": "bris_de_glace"}`` or ``{"signer": None}`` (see
    :meth:`TestPki.vihf_headers`); other keyword arguments go to :class:`XdsClient`.
    By default the physician ``medecin`` acts in reinforced indirect mode (AIR): signed by
    the institution, acting as the professional; ``{"professional": "patient"}`` (or
    ``"representant"``) acts for the patient through the test PKI's patient portal, in plain
    indirect mode.
    Session-scoped so that module fixtures can use it too.
    """

    def make(
        patient_id: str | None = None, *, vihf: dict[str, Any] | None = None, **kwargs: object
    ) -> XdsClient:
        vihf = vihf or {}
        portal = vihf.get("professional") in (PATIENT, REPRESENTATIVE)
        claims = {"authentication_mode": "INDIRECTE" if portal else "INDIRECTE_RENFORCEE", **vihf}
        headers = test_pki.vihf_headers(patient_id or new_patient_id(), **claims)
        kwargs.setdefault("header_factory", headers)
        return schema_checked(XdsClient(server.url, **kwargs))  # type: ignore[arg-type]

    return make


def schema_checked(client: XdsClient) -> XdsClient:
    """Make every answer the client receives pass our XSDs: each service test then also checks
    that what the server emits is schema-valid."""
    send = client.soap.send_envelope

    def checked(*args: Any, **kwargs: Any) -> Any:
        reply = send(*args, **kwargs)
        if reply.payload is not None and reply.fault is None:
            problems = payload_errors(reply.payload)
            assert not problems, f"server answer is not schema-valid: {problems}"
        return reply

    client.soap.send_envelope = checked  # type: ignore[method-assign]
    return client


@pytest.fixture
def client(client_for: ClientFactory, patient_id: str) -> XdsClient:
    """A client acting for the test's fresh patient."""
    return client_for(patient_id)


@dataclass(frozen=True)
class Snapshot:
    rows: dict[str, int]
    blobs: frozenset[str]


TABLES = (
    "document_entry",
    "submission_set",
    "folder",
    "association",
    "object_locator",
    "unique_id_locator",
)


def snapshot(engine: Engine, store_dir: Path) -> Snapshot:
    """Row counts of every registry table and the set of stored documents."""
    with engine.connect() as conn:
        rows = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}  # noqa: S608 - fixed table names
    root = store_dir / "sha256"
    blobs = (
        frozenset(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else frozenset()
    )
    return Snapshot(rows, blobs)


@pytest.fixture
def unchanged(engine: Engine, server: Server) -> Iterator[None]:
    """Asserts that the test leaves the registry and the document store exactly as they were."""
    before = snapshot(engine, server.store_dir)
    yield
    assert snapshot(engine, server.store_dir) == before
