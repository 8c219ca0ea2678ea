"""The ``dmp-xds`` command: serve, migrate, patient, submit/query/retrieve helpers.

Every command reads the same ``DMP_XDS_*`` settings, so ``dmp-xds patient create`` run beside a
serving instance talks to the same database (the embedded one included: pgserver lets several
processes share one running server).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from . import __version__, logs
from .config import Settings

log = logging.getLogger("dmp_xds")


@contextlib.contextmanager
def database(settings: Settings, *, apply_migrations: bool = True) -> Iterator[Settings]:
    """Settings with a database URL: the configured one, or an embedded server started here."""
    from .registry.database import EmbeddedPostgres, migrate

    embedded = None
    if settings.database_url is None:
        embedded = EmbeddedPostgres(settings.embedded_pg_dir)
        settings = replace(settings, database_url=embedded.start())
    try:
        if apply_migrations:
            migrate(settings.database_url or "")
        yield settings
    finally:
        if embedded is not None:
            embedded.stop()


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from .server import run

    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    with database(settings) as ready:
        host_port = ready.listen
        print(f"dmp-xds {__version__} listening on http://{host_port}", flush=True)
        for path in ("/xds/repository", "/xds/registry"):
            print(f"  http://{host_port}{path}   (WSDL: http://{host_port}{path}?wsdl)", flush=True)
        print(f"  document store: {ready.effective_store_url}", flush=True)
        if settings.database_url is None:
            print(f"  embedded PostgreSQL: {ready.embedded_pg_dir}", flush=True)
        run(ready)
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings):
        print("database schema is up to date")
    return 0


def cmd_patient(settings: Settings, args: argparse.Namespace) -> int:
    from .metadata.datatypes import parse_patient_id
    from .registry.database import make_engine
    from .registry.register import create_patient

    try:
        canonical = parse_patient_id(args.patient_id).canonical
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with database(settings) as ready:
        engine = make_engine(ready.database_url or "", pool_size=1)
        with engine.begin() as conn:
            _, created = create_patient(conn, canonical)
        engine.dispose()
    print(f"patient {canonical} {'registered' if created else 'already registered'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmp-xds", description="IHE XDS.b registry and repository for DMP-style records"
    )
    parser.add_argument("--version", action="version", version=f"dmp-xds {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="run the SOAP server (starts embedded PostgreSQL if needed)"
    )
    serve.set_defaults(func=cmd_serve)
    migrate = sub.add_parser("migrate", help="apply the database migrations")
    migrate.set_defaults(func=cmd_migrate)
    patient = sub.add_parser("patient", help="manage known patient ids")
    patient_sub = patient.add_subparsers(dest="patient_command", required=True)
    create = patient_sub.add_parser("create", help="register a patient id (CX: id^^^&OID&ISO)")
    create.add_argument("patient_id")
    create.set_defaults(func=cmd_patient)
    return parser


def main(argv: list[str] | None = None) -> int:
    logs.configure()
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return int(args.func(settings, args))


if __name__ == "__main__":
    sys.exit(main())
