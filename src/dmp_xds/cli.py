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
from .security import commands as security_commands

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

    settings = security_commands.with_test_pki(settings, args.pki)
    problem = security_commands.configuration_error(settings)
    if problem:
        print(f"configuration error: {problem}", file=sys.stderr)
        return 2
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    with database(settings) as ready:
        host_port = ready.listen
        scheme = "https" if ready.tls_cert else "http"
        print(f"dmp-xds {__version__} listening on {scheme}://{host_port}", flush=True)
        for path in ("/xds/repository", "/xds/registry"):
            url = f"{scheme}://{host_port}{path}"
            print(f"  {url}   (WSDL: {url}?wsdl)", flush=True)
        if ready.trust_store is None:
            print("  WARNING: no trust store (DMP_XDS_TRUST_STORE): every call is refused")
        if not ready.homologated_software:
            print("  WARNING: no DMP_XDS_HOMOLOGATED_SOFTWARE: every call is refused")
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


def cmd_gc(settings: Settings, args: argparse.Namespace) -> int:
    from .registry.database import make_engine
    from .repository.maintenance import collect_garbage, gc_summary
    from .repository.store import open_store

    grace = settings.gc_grace_s if args.grace_s is None else args.grace_s
    with database(settings, apply_migrations=False) as ready:
        engine = make_engine(ready.database_url or "", pool_size=1)
        try:
            store = open_store(ready.effective_store_url)
            report = collect_garbage(engine, store, grace_s=grace, dry_run=args.dry_run)
        finally:
            engine.dispose()
    print("\n".join(gc_summary(report)))
    return 1 if report.failed else 0


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    from .registry.database import make_engine
    from .repository.maintenance import verify, verify_summary
    from .repository.store import open_store

    with database(settings, apply_migrations=False) as ready:
        engine = make_engine(ready.database_url or "", pool_size=1)
        try:
            store = open_store(ready.effective_store_url)
            report = verify(engine, store, repository_unique_id=settings.repository_unique_id)
        finally:
            engine.dispose()
    print("\n".join(verify_summary(report)))
    return 0 if report.healthy else 1


def cmd_load_synthetic(settings: Settings, args: argparse.Namespace) -> int:
    """Fill the registry with made-up records (registry/synthetic.py) for scale tests."""
    from .registry.database import make_engine
    from .registry.synthetic import load_synthetic

    with database(settings) as ready:
        engine = make_engine(ready.database_url or "", pool_size=1)
        try:
            report = load_synthetic(
                engine,
                args.documents,
                args.patients,
                heavy_patients=args.heavy_patients,
                seed=args.seed,
                progress=True,
            )
        finally:
            engine.dispose()
    print(
        f"loaded {report.documents} documents of {report.patients} patients "
        f"({report.submission_sets} submission sets, {report.rows} rows) in "
        f"{report.seconds:.1f} s: {report.rows_per_s:,.0f} rows/s, "
        f"{report.documents / report.seconds:,.0f} documents/s; "
        f"ANALYZE {report.analyze_seconds:.1f} s"
    )
    if report.heavy_patient_ids:
        print(f"a patient with 50 documents: {report.heavy_patient_ids[0]}")
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
    security_commands.add_serve_option(serve)
    security_commands.add_parsers(sub)
    migrate = sub.add_parser("migrate", help="apply the database migrations")
    migrate.set_defaults(func=cmd_migrate)
    patient = sub.add_parser("patient", help="manage known patient ids")
    patient_sub = patient.add_subparsers(dest="patient_command", required=True)
    create = patient_sub.add_parser("create", help="register a patient id (CX: id^^^&OID&ISO)")
    create.add_argument("patient_id")
    create.set_defaults(func=cmd_patient)
    gc = sub.add_parser(
        "gc",
        help="remove document bytes no registry entry references, after a grace period; "
        "and stale spool files",
    )
    gc.add_argument("--dry-run", action="store_true", help="report only, remove nothing")
    gc.add_argument(
        "--grace-s",
        type=int,
        default=None,
        help="keep anything written less than this many seconds ago (default: "
        "DMP_XDS_GC_GRACE_S, 86400)",
    )
    gc.set_defaults(func=cmd_gc)
    verify = sub.add_parser(
        "verify",
        help="hash every registered document; report missing, corrupt and unreferenced bytes "
        "(exit status 1 if any registered document is missing or corrupt)",
    )
    verify.set_defaults(func=cmd_verify)
    synthetic = sub.add_parser(
        "load-synthetic",
        help="add made-up patients and documents to the registry (scale tests; no bytes)",
    )
    synthetic.add_argument("--documents", type=int, required=True)
    synthetic.add_argument("--patients", type=int, required=True)
    synthetic.add_argument(
        "--heavy-patients",
        type=int,
        default=None,
        help="patients with exactly 50 documents (default: one in 50)",
    )
    synthetic.add_argument("--seed", type=int, default=None)
    synthetic.set_defaults(func=cmd_load_synthetic)
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
