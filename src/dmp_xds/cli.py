"""The ``dmp-xds`` command: serve, migrate, patient, submit/query/retrieve helpers.

Every command reads the same ``DMP_XDS_*`` settings, so ``dmp-xds patient create`` run beside a
serving instance talks to the same database (the embedded one included: pgserver lets several
processes share one running server).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from . import __version__, logs
from .client import commands as client_commands
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
    """Open a patient's DMP record (the patient's consent is the operator's to check), and
    optionally authorise professionals on it: what the national DMP does when a record is
    created, for a host that imports its patients."""
    from .metadata.datatypes import parse_patient_id
    from .patients import authorisations as auth
    from .patients import vocabulary as dv
    from .patients.records import Identity, Oppositions, RecordError, create_record
    from .registry.database import make_engine

    try:
        canonical = parse_patient_id(args.patient_id).canonical
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    identity = Identity(
        given=args.given, family=args.family, gender=args.gender, birth_date=args.birth_date
    )
    with database(settings) as ready:
        engine = make_engine(ready.database_url or "", pool_size=1)
        try:
            with engine.begin() as conn:
                try:
                    record = create_record(
                        conn, canonical, identity, Oppositions(), consent=True, by="dmp-xds cli"
                    )
                    outcome = "registered: DMP record opened"
                except RecordError as exc:
                    outcome = f"already registered ({exc.code})"
                    record = None
                key = record.patient_key if record else _record_key(conn, canonical)
                for person, mt in [(p, False) for p in args.authorise] + (
                    [(args.medecin_traitant, True)] if args.medecin_traitant else []
                ):
                    actor = auth.Actor(auth.PROFESSIONAL, person, dv.PS_ID_TYPE)
                    auth.authorise(conn, key, actor, by="dmp-xds cli", medecin_traitant=mt)
        finally:
            engine.dispose()
    print(f"patient {canonical} {outcome}")
    return 0


def _record_key(conn: object, patient_id: str) -> int:
    from .patients.records import get_record

    record = get_record(conn, patient_id)  # type: ignore[arg-type]
    assert record is not None
    return record.patient_key


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


def cmd_purge(settings: Settings, args: argparse.Namespace) -> int:
    """Erase a Deleted document for good on a hosting physician's decision (registry/purge.py
    says what goes and why); without ``--yes`` it shows what would go and asks."""
    from .metadata.datatypes import parse_patient_id
    from .registry.database import make_engine
    from .registry.purge import BYTES_OUTCOMES, PurgeRefused, describe, plan_purge, purge
    from .repository.store import open_store

    try:
        patient = parse_patient_id(args.patient)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with database(settings, apply_migrations=False) as ready:
        engine = make_engine(ready.database_url or "", pool_size=1)
        try:
            if not args.yes:
                try:
                    with engine.connect() as conn:
                        print("\n".join(describe(plan_purge(conn, patient, args.document))))
                except PurgeRefused as exc:
                    print(f"refused: {exc}", file=sys.stderr)
                    return 1
                if not sys.stdin.isatty() or input("purge it for good? [y/N] ").lower() != "y":
                    print("nothing purged (confirm with --yes)", file=sys.stderr)
                    return 1
            store = open_store(ready.effective_store_url)
            report = purge(
                engine,
                store,
                patient,
                args.document,
                by=args.by,
                authorised=settings.purge_authorised,
            )
        except PurgeRefused as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
        finally:
            engine.dispose()
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(report.plan.counts().items()))
    print(f"purged document {args.document}: {counts}")
    for key, outcome in report.bytes.items():
        print(f"document bytes {key}: {BYTES_OUTCOMES[outcome]}")
    return 0


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
                authorise=args.authorise,
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


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    """``python -m benchmarks`` under another name. The benchmarks (and the test fixtures they
    build documents with) live in the source tree, not in the installed package, so this runs
    them from a source checkout: the current directory or one above it, or the tree this
    package is installed from in editable mode."""
    checkout = _source_checkout()
    if checkout is None:
        print(
            "dmp-xds bench needs a source checkout of dmp-xds (benchmarks/ and tests/ are not "
            "part of the installed package): run it from the repository, after "
            "`pip install -e '.[bench]'`",
            file=sys.stderr,
        )
        return 2
    sys.path.insert(0, str(checkout))
    logging.getLogger().setLevel(logging.WARNING)  # migrations' INFO lines would drown the table
    from benchmarks.__main__ import main as bench_main

    return bench_main(args.bench_args)


def _source_checkout() -> Path | None:
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents, Path(__file__).resolve().parents[2]):
        if (candidate / "benchmarks" / "__main__.py").is_file() and (
            candidate / "tests" / "fixtures"
        ).is_dir():
            return candidate
    return None


def cmd_trail(settings: Settings, args: argparse.Namespace) -> int:
    """A patient's trail on stdout (JSON or CSV), oldest event first: what a hosting operator
    hands a patient who asks who accessed their record. The export is itself recorded in the
    trail (transaction TRAIL-EXPORT), after the events it exported."""
    import getpass
    import uuid

    from .audit.traces import utc_text, whole_trail, write_csv, write_json
    from .audit.trail import AuditEvent, Auditor
    from .metadata.datatypes import parse_patient_id
    from .registry.database import make_engine

    try:
        canonical = parse_patient_id(args.patient).canonical
        since, until = _moment(args.since, "--since"), _moment(args.until, "--until")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with database(settings, apply_migrations=False) as ready:
        engine = make_engine(ready.database_url or "", pool_size=1)
        try:
            with engine.connect() as conn:
                traces = whole_trail(conn, canonical, since=since, until=until)
                if args.format == "csv":
                    count = write_csv(traces, sys.stdout)
                else:
                    header = {
                        "patient": canonical,
                        "exported_at": utc_text(dt.datetime.now(dt.UTC)),
                        "since": utc_text(since) if since else None,
                        "until": utc_text(until) if until else None,
                    }
                    count = write_json(traces, sys.stdout, header)
            Auditor(engine).record(
                AuditEvent(
                    str(uuid.uuid4()),
                    "urn:dmp-xds:cli:trail",
                    "success",
                    patient_id=canonical,
                    objects=[f"events:{count}"],
                    detail=f"exported by {getpass.getuser()} as {args.format}",
                )
            )
        finally:
            engine.dispose()
    return 0


def _moment(value: str | None, option: str) -> dt.datetime | None:
    """``YYYY-MM-DD`` or an ISO 8601 date-time (UTC unless it says otherwise)."""
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{option} must be a date (YYYY-MM-DD) or an ISO date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


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
    create = patient_sub.add_parser(
        "create", help="open a patient's DMP record (CX: id^^^&OID&ISO), with consent"
    )
    create.add_argument("patient_id")
    create.add_argument("--family", help="family (usage) name")
    create.add_argument("--given", help="given name")
    create.add_argument("--gender", choices=("M", "F", "U"))
    create.add_argument("--birth-date", help="YYYYMMDD")
    create.add_argument(
        "--authorise",
        action="append",
        default=[],
        metavar="IDNAT",
        help="authorise this professional (VIHF NameID, e.g. 8 + RPPS); repeatable",
    )
    create.add_argument(
        "--medecin-traitant", metavar="IDNAT", help="designate this physician médecin traitant"
    )
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
    purge = sub.add_parser(
        "purge",
        help="erase a document whose every version is Deleted, metadata and bytes, on a "
        "hosting physician's decision (DMP_XDS_PURGE_AUTHORISED)",
    )
    purge.add_argument("--patient", required=True, help="the patient's id (CX: id^^^&OID&ISO)")
    purge.add_argument("--document", required=True, help="the document's uniqueId")
    purge.add_argument("--by", required=True, help="the hosting physician's national id")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(func=cmd_purge)
    client_commands.add_parsers(sub)
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
    synthetic.add_argument(
        "--authorise",
        action="append",
        default=[],
        metavar="IDNAT",
        help="authorise this professional on every loaded record (repeatable)",
    )
    synthetic.set_defaults(func=cmd_load_synthetic)
    trail = sub.add_parser(
        "trail",
        help="print a patient's audit trail (who did what on the record, when), oldest first",
    )
    trail.add_argument("--patient", required=True, help="the patient's id (CX: id^^^&OID&ISO)")
    trail.add_argument("--since", help="from this date or date-time (inclusive, UTC by default)")
    trail.add_argument("--until", help="up to this date or date-time (exclusive)")
    trail.add_argument("--format", choices=("json", "csv"), default="json")
    trail.set_defaults(func=cmd_trail)
    bench = sub.add_parser(
        "bench",
        help="run a benchmark scenario, as `python -m benchmarks` (from a source checkout)",
    )
    bench.add_argument(
        "bench_args",
        nargs=argparse.REMAINDER,
        metavar="SCENARIO [ARGS]",
        help="the scenario and its options (none: list the scenarios)",
    )
    bench.set_defaults(func=cmd_bench)
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
