"""``dmp-xds pki ...`` commands and ``serve --pki``: a test PKI for development and tests.

Kept apart from ``cli.py`` so that the command table there stays one line per command. A test
PKI never weakens the server: ``serve --pki DIR`` only points the trust store, the CRL folder
and the homologated software list at the test PKI; every call still needs a verified VIHF.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..config import Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    pki = sub.add_parser("pki", help="test PKI: CA, institution, server and professionals")
    pki_sub = pki.add_subparsers(dest="pki_command", required=True)
    init = pki_sub.add_parser("init", help="create a test PKI in a folder")
    init.add_argument("directory", type=Path)
    init.set_defaults(func=cmd_init)
    vihf = pki_sub.add_parser(
        "vihf", help="print a signed wsse:Security header (VIHF) made with a test PKI"
    )
    vihf.add_argument("directory", type=Path)
    vihf.add_argument("--patient", required=True, help="patient CX: matricule^^^&OID&ISO")
    vihf.add_argument(
        "--professional",
        default="medecin",
        help="medecin, infirmier, sage-femme..., or patient / representant (the portal's VIHF)",
    )
    vihf.add_argument("--access-mode", default="normal", help="normal, bris_de_glace, centre_15")
    vihf.set_defaults(func=cmd_vihf)


def add_serve_option(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--pki",
        type=Path,
        default=None,
        help="trust the test PKI in this folder (made by 'dmp-xds pki init'); "
        "DMP_XDS_* variables that are set still win",
    )


def with_test_pki(settings: Settings, directory: Path | None) -> Settings:
    """``settings`` pointed at a test PKI where they do not say otherwise."""
    if directory is None:
        return settings
    from .pki import load_test_pki

    pki = load_test_pki(directory)
    return dataclasses.replace(
        settings,
        trust_store=settings.trust_store or pki.trust_dir,
        crl_path=settings.crl_path or pki.crl_dir,
        homologated_software=settings.homologated_software or (pki.homologation,),
        patient_portals=settings.patient_portals or ((pki.portal_id,) if pki.portal else ()),
    )


def configuration_error(settings: Settings) -> str | None:
    """What is wrong with the security settings, checked before the server starts (a worker
    failing on them would only say so in its own log, over and over)."""
    from ..server import tls_options
    from .authenticate import SecurityPolicy
    from .trust import TrustStore

    try:
        SecurityPolicy.from_settings(settings)
        if settings.trust_store is not None:
            TrustStore.from_paths(settings.trust_store, settings.crl_path)
        tls_options(settings)
    except (ValueError, OSError) as exc:
        return str(exc)
    return None


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    from .pki import init_test_pki

    pki = init_test_pki(args.directory)
    print(f"test PKI written to {pki.directory}")
    print(f"  CA: {pki.ca.cert.subject.rfc4514_string()}")
    print(f"  institution (signs VIHFs): {pki.institution.cert.subject.rfc4514_string()}")
    if pki.portal is not None:
        print(
            f"  patient portal (signs patients' VIHFs): {pki.portal.cert.subject.rfc4514_string()}"
        )
    for handle, issued in pki.professionals.items():
        print(f"  {handle}: {issued.cert.subject.rfc4514_string()}")
    print("serve with it:  dmp-xds serve --pki " + str(pki.directory))
    print("or set:")
    for name, value in {**pki.server_env(), **pki.tls_env()}.items():
        print(f"  export {name}={value}")
    return 0


def cmd_vihf(settings: Settings, args: argparse.Namespace) -> int:
    from lxml import etree

    from .pki import load_test_pki

    pki = load_test_pki(args.directory)
    try:
        headers = pki.vihf_headers(args.patient, args.professional, access_mode=args.access_mode)
    except StopIteration:
        print(f"error: no professional {args.professional!r} in the test PKI", file=sys.stderr)
        return 2
    [header] = headers()
    sys.stdout.write(etree.tostring(header, encoding="unicode") + "\n")
    return 0
