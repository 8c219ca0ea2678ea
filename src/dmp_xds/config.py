"""Settings, read once from ``DMP_XDS_*`` environment variables; each has a documented default.

README.md lists the same variables; keep the two in step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _bool(name: str, default: bool) -> bool:
    raw = _env(name, "true" if default else "false").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def _path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _list(name: str) -> tuple[str, ...]:
    """A comma-separated list (blank items dropped)."""
    return tuple(s.strip() for s in os.environ.get(name, "").split(",") if s.strip())


@dataclass(frozen=True)
class ClientSettings:
    """Who the ``dmp-xds`` client commands (submit, query, retrieve, import) act as, and where.

    The VIHF each call carries is signed with ``vihf_key`` / ``vihf_cert`` (the institution's
    signing certificate in indirect mode) and names this professional and structure; README
    "Client commands" lists the variables. Reinforced indirect mode by default: plain indirect
    mode acts as the institution, which the DMP does not let read a record.
    """

    url: str | None = None
    vihf_key: Path | None = None
    vihf_cert: Path | None = None
    professional_id: str | None = None
    professional_name: str | None = None
    profession: str | None = None
    specialty: str | None = None
    structure_id: str | None = None
    homologation: str | None = None
    authentication_mode: str = "INDIRECTE_RENFORCEE"
    ca_file: Path | None = None

    @classmethod
    def from_env(cls) -> ClientSettings:
        return cls(
            url=os.environ.get("DMP_XDS_URL") or None,
            vihf_key=_path("DMP_XDS_VIHF_KEY"),
            vihf_cert=_path("DMP_XDS_VIHF_CERT"),
            professional_id=os.environ.get("DMP_XDS_VIHF_PROFESSIONAL") or None,
            professional_name=os.environ.get("DMP_XDS_VIHF_NAME") or None,
            profession=os.environ.get("DMP_XDS_VIHF_PROFESSION") or None,
            specialty=os.environ.get("DMP_XDS_VIHF_SPECIALTY") or None,
            structure_id=os.environ.get("DMP_XDS_VIHF_STRUCTURE") or None,
            homologation=os.environ.get("DMP_XDS_VIHF_HOMOLOGATION") or None,
            authentication_mode=_env("DMP_XDS_VIHF_AUTHENTICATION_MODE", cls.authentication_mode),
            ca_file=_path("DMP_XDS_CA_FILE"),
        )


def _collector_url(name: str) -> str | None:
    """``tls://host:port`` or ``tcp://host:port`` (checked here: a typo must stop the start,
    not silently disable the audit export)."""
    value = os.environ.get(name)
    if not value:
        return None
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("tls", "tcp") or not parts.hostname or port is None:
        raise ValueError(f"{name} must be tls://host:port or tcp://host:port, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Runtime configuration. Build with :meth:`from_env`; tests build it directly."""

    listen: str = "127.0.0.1:8080"
    data_dir: Path = Path("var")
    database_url: str | None = None
    store_url: str | None = None
    # Documents of one submission written to the store at once (each write waits on its own
    # fsyncs or S3 PUT; together the filesystem commits them in fewer journal flushes).
    store_concurrency: int = 8
    repository_unique_id: str = "1.2.250.1.999.1.1.1"
    home_community_id: str = "urn:oid:1.2.250.1.999.1.1"
    workers: int = 2
    request_timeout_s: int = 120
    # SIGTERM: in-flight requests get this long to finish before workers are killed.
    graceful_timeout_s: int = 30
    # Fail fast when PostgreSQL is unreachable or stuck (README "Operations").
    db_connect_timeout_s: int = 5
    db_statement_timeout_s: int = 30
    # Hot statements planned once per connection (PREPARE); off behind PgBouncer in
    # transaction mode, where a session's prepared statements are not the next transaction's.
    db_prepare: bool = True
    max_body_bytes: int = 256 * 1024 * 1024
    max_xml_bytes: int = 32 * 1024 * 1024
    max_attachments: int = 5000
    max_xml_depth: int = 200  # libxml2 itself stops at 256 (huge_tree is never enabled)
    max_query_results: int = 5000
    # dmp-xds gc: unreferenced document bytes and spool files younger than this are kept.
    gc_grace_s: int = 24 * 3600
    trust_store: Path | None = None
    homologated_software: tuple[str, ...] = field(default_factory=tuple)
    clock_skew_s: int = 300
    # ITI-62 purges: national identifiers (VIHF NameID) of the host's physicians allowed to
    # remove metadata; empty (the default) refuses every ITI-62 (policy/purge.py says why).
    purge_authorised: tuple[str, ...] = field(default_factory=tuple)
    # Patient access: Identifiant_Structure of the hosting operator's patient portals trusted
    # to act for patients and their legal representatives; empty (the default): no patient
    # access (security/authenticate.py).
    patient_portals: tuple[str, ...] = field(default_factory=tuple)
    # Emergency access modes (bris_de_glace, centre_15) whose VIHF must give a motive; empty
    # (the default): the motive is recorded when given, never required, since the national
    # DMP's samples carry none (security/authenticate.py).
    motive_required: tuple[str, ...] = field(default_factory=tuple)
    # The DMP's rules as data (policy/): the functional rights matrix (PDT-INF-526) and the
    # profession x document type habilitations; None: the files shipped with the code.
    rights_matrix: Path | None = None
    habilitations: Path | None = None
    # VIHF security (see src/dmp_xds/security/ and README "Security").
    crl_path: Path | None = None
    signature_algorithms: tuple[str, ...] = ("rsa-sha256", "rsa-sha1")
    assertion_max_age_s: int = 300
    trusted_proxies: tuple[str, ...] = field(default_factory=tuple)
    client_cert_header: str = "X-SSL-Client-Cert"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # PDT-INF-579 v4, "Accès LPS" (TLS 1.2), in OpenSSL's names.
    tls_ciphers: str = (
        "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:"
        "ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
    )
    # ATNA export (audit/export.py): unset URL = no export; the database trail is kept anyway.
    atna_url: str | None = None  # tls://host:port or tcp://host:port
    atna_ca: Path | None = None  # CAs to verify the collector (unset: the system's)
    atna_cert: Path | None = None  # our client certificate for mutual TLS (PEM)
    atna_key: Path | None = None
    atna_source_id: str | None = None  # AuditSourceID; unset: the host name
    atna_queue_size: int = 10_000  # per worker; beyond, events are dropped (and counted)
    atna_timeout_s: int = 5  # connect and send timeout of the sender thread
    # The client commands (dmp-xds submit/query/retrieve/import).
    client: ClientSettings = field(default_factory=ClientSettings)

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(_env("DMP_XDS_DATA_DIR", "var"))
        trust = os.environ.get("DMP_XDS_TRUST_STORE")
        return cls(
            listen=_env("DMP_XDS_LISTEN", cls.listen),
            data_dir=data_dir,
            database_url=os.environ.get("DMP_XDS_DATABASE_URL") or None,
            store_url=os.environ.get("DMP_XDS_STORE_URL") or None,
            repository_unique_id=_env("DMP_XDS_REPOSITORY_UNIQUE_ID", cls.repository_unique_id),
            home_community_id=_env("DMP_XDS_HOME_COMMUNITY_ID", cls.home_community_id),
            workers=_int("DMP_XDS_WORKERS", cls.workers),
            request_timeout_s=_int("DMP_XDS_REQUEST_TIMEOUT_S", cls.request_timeout_s),
            graceful_timeout_s=_int("DMP_XDS_GRACEFUL_TIMEOUT_S", cls.graceful_timeout_s),
            db_connect_timeout_s=_int("DMP_XDS_DB_CONNECT_TIMEOUT_S", cls.db_connect_timeout_s),
            db_statement_timeout_s=_int(
                "DMP_XDS_DB_STATEMENT_TIMEOUT_S", cls.db_statement_timeout_s
            ),
            db_prepare=_bool("DMP_XDS_DB_PREPARE", cls.db_prepare),
            max_body_bytes=_int("DMP_XDS_MAX_BODY_BYTES", cls.max_body_bytes),
            max_xml_bytes=_int("DMP_XDS_MAX_XML_BYTES", cls.max_xml_bytes),
            max_attachments=_int("DMP_XDS_MAX_ATTACHMENTS", cls.max_attachments),
            store_concurrency=_int("DMP_XDS_STORE_CONCURRENCY", cls.store_concurrency),
            max_xml_depth=_int("DMP_XDS_MAX_XML_DEPTH", cls.max_xml_depth),
            max_query_results=_int("DMP_XDS_MAX_QUERY_RESULTS", cls.max_query_results),
            gc_grace_s=_int("DMP_XDS_GC_GRACE_S", cls.gc_grace_s),
            trust_store=Path(trust) if trust else None,
            homologated_software=tuple(
                s.strip()
                for s in os.environ.get("DMP_XDS_HOMOLOGATED_SOFTWARE", "").split(",")
                if s.strip()
            ),
            clock_skew_s=_int("DMP_XDS_CLOCK_SKEW_S", cls.clock_skew_s),
            purge_authorised=_list("DMP_XDS_PURGE_AUTHORISED"),
            patient_portals=_list("DMP_XDS_PATIENT_PORTALS"),
            motive_required=_list("DMP_XDS_MOTIVE_REQUIRED"),
            rights_matrix=_path("DMP_XDS_RIGHTS_MATRIX"),
            habilitations=_path("DMP_XDS_HABILITATIONS"),
            crl_path=_path("DMP_XDS_CRL_DIR"),
            signature_algorithms=_list("DMP_XDS_SIGNATURE_ALGORITHMS") or cls.signature_algorithms,
            assertion_max_age_s=_int("DMP_XDS_ASSERTION_MAX_AGE_S", cls.assertion_max_age_s),
            trusted_proxies=_list("DMP_XDS_TRUSTED_PROXIES"),
            client_cert_header=_env("DMP_XDS_CLIENT_CERT_HEADER", cls.client_cert_header),
            tls_cert=_path("DMP_XDS_TLS_CERT"),
            tls_key=_path("DMP_XDS_TLS_KEY"),
            tls_client_ca=_path("DMP_XDS_TLS_CLIENT_CA"),
            tls_ciphers=_env("DMP_XDS_TLS_CIPHERS", cls.tls_ciphers),
            atna_url=_collector_url("DMP_XDS_ATNA_URL"),
            atna_ca=_path("DMP_XDS_ATNA_CA"),
            atna_cert=_path("DMP_XDS_ATNA_CERT"),
            atna_key=_path("DMP_XDS_ATNA_KEY"),
            atna_source_id=os.environ.get("DMP_XDS_ATNA_SOURCE_ID") or None,
            atna_queue_size=_int("DMP_XDS_ATNA_QUEUE_SIZE", cls.atna_queue_size),
            atna_timeout_s=_int("DMP_XDS_ATNA_TIMEOUT_S", cls.atna_timeout_s),
            client=ClientSettings.from_env(),
        )

    @property
    def effective_store_url(self) -> str:
        """The document store URL: ``DMP_XDS_STORE_URL`` or ``<data dir>/documents``."""
        if self.store_url:
            return self.store_url
        return (self.data_dir / "documents").resolve().as_uri()

    @property
    def server_url(self) -> str:
        """Where the client commands send their calls: ``DMP_XDS_URL``, or this server's own
        listening address."""
        if self.client.url:
            return self.client.url
        return f"{'https' if self.tls_cert else 'http'}://{self.listen}"

    @property
    def embedded_pg_dir(self) -> Path:
        return (self.data_dir / "pg").resolve()
