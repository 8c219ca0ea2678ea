"""Settings, read once from ``DMP_XDS_*`` environment variables; each has a documented default.

README.md lists the same variables; keep the two in step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    """Runtime configuration. Build with :meth:`from_env`; tests build it directly."""

    listen: str = "127.0.0.1:8080"
    data_dir: Path = Path("var")
    database_url: str | None = None
    store_url: str | None = None
    repository_unique_id: str = "1.2.250.1.999.1.1.1"
    home_community_id: str = "urn:oid:1.2.250.1.999.1.1"
    workers: int = 2
    request_timeout_s: int = 120
    max_body_bytes: int = 256 * 1024 * 1024
    max_xml_bytes: int = 32 * 1024 * 1024
    max_attachments: int = 5000
    max_query_results: int = 5000
    trust_store: Path | None = None
    homologated_software: tuple[str, ...] = field(default_factory=tuple)
    clock_skew_s: int = 300

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
            max_body_bytes=_int("DMP_XDS_MAX_BODY_BYTES", cls.max_body_bytes),
            max_xml_bytes=_int("DMP_XDS_MAX_XML_BYTES", cls.max_xml_bytes),
            max_attachments=_int("DMP_XDS_MAX_ATTACHMENTS", cls.max_attachments),
            max_query_results=_int("DMP_XDS_MAX_QUERY_RESULTS", cls.max_query_results),
            trust_store=Path(trust) if trust else None,
            homologated_software=tuple(
                s.strip()
                for s in os.environ.get("DMP_XDS_HOMOLOGATED_SOFTWARE", "").split(",")
                if s.strip()
            ),
            clock_skew_s=_int("DMP_XDS_CLOCK_SKEW_S", cls.clock_skew_s),
        )

    @property
    def effective_store_url(self) -> str:
        """The document store URL: ``DMP_XDS_STORE_URL`` or ``<data dir>/documents``."""
        if self.store_url:
            return self.store_url
        return (self.data_dir / "documents").resolve().as_uri()

    @property
    def embedded_pg_dir(self) -> Path:
        return (self.data_dir / "pg").resolve()
