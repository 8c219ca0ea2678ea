"""Who the client commands act as: the VIHF each call carries, from options, environment or a
test PKI.

Every call to the server needs a signed VIHF naming the professional, the structure, the
software's homologation number and the patient (security/ says why). The commands build one
per call with :class:`~dmp_xds.client.vihf.VihfHeaders`, the patient changing from call to call
(an import spans patients). Values come, first found wins, from the command line, the
``DMP_XDS_VIHF_*`` variables (:class:`~dmp_xds.config.ClientSettings`), and ``--pki DIR`` (a
test PKI from ``dmp-xds pki init``: its institution certificate and one of its professionals),
which makes a development setup a one-option affair.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from ..config import Settings
from ..metadata.model import Author
from ..security.principal import PROFESSION_SYSTEM, SPECIALTY_SYSTEM
from .vihf import SigningCredentials, VihfClaims, VihfHeaders
from .xds import XdsClient

IDNPS = "1.2.250.1.71.4.2.1"
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
AUTHENTICATION_MODES = ("INDIRECTE_RENFORCEE", "INDIRECTE", "DIRECTE")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every client command takes (server and VIHF)."""
    group = parser.add_argument_group("server and VIHF (defaults: DMP_XDS_URL, DMP_XDS_VIHF_*)")
    group.add_argument("--url", help="server base URL (default: DMP_XDS_URL, else DMP_XDS_LISTEN)")
    group.add_argument("--ca-file", type=Path, help="CA bundle for an https server")
    group.add_argument("--timeout", type=float, default=120, help="seconds per call")
    group.add_argument("--vihf-key", type=Path, help="signing key (PEM)")
    group.add_argument("--vihf-cert", type=Path, help="signing certificate, chain after (PEM)")
    group.add_argument("--professional-id", help="the professional's national id (NameID)")
    group.add_argument("--professional-name", help="'FAMILY GIVEN' as the VIHF names them")
    group.add_argument("--profession", help="TRE_G15 profession code (10: médecin)")
    group.add_argument("--specialty", help="TRE_R01 specialty code (SM26...)")
    group.add_argument("--structure-id", help="the structure's national id")
    group.add_argument("--homologation", help="the software's DMP homologation number")
    group.add_argument(
        "--authentication-mode",
        choices=AUTHENTICATION_MODES,
        help="VIHF authentication mode (default INDIRECTE_RENFORCEE)",
    )
    group.add_argument(
        "--pki",
        type=Path,
        help="take what is not given from this test PKI ('dmp-xds pki init'): its institution "
        "signs, --pki-professional acts",
    )
    group.add_argument("--pki-professional", default="medecin", help="medecin, infirmier...")


@dataclass(frozen=True)
class Identity:
    """A professional acting through our software, with the key that signs its VIHFs."""

    claims: VihfClaims
    credentials: SigningCredentials

    def headers_for(self, patient_id: str) -> VihfHeaders:
        """A header factory: a freshly signed VIHF naming ``patient_id`` on every call."""
        return VihfHeaders(self.claims.with_(patient_id=patient_id), self.credentials)

    def author(self) -> Author:
        """The SubmissionSet author: the professional who submits."""
        family, _, given = (self.claims.subject_name or "").partition(" ")
        person = f"{self.claims.name_id}^{family}^{given}^^^^^^&{IDNPS}&ISO^D^^^IDNPS"
        roles = [f"{code}^{display}^{system}" for code, system, display in self.claims.roles[1:]]
        return Author(person=person, specialties=roles)


def _pem_chain(path: Path) -> tuple[bytes, ...]:
    chain = tuple(_PEM_BLOCK.findall(path.read_bytes()))
    if not chain:
        raise ValueError(f"{path}: no PEM certificate")
    return chain


def _first(*values: object) -> object:
    return next((v for v in values if v not in (None, "")), None)


def identity_from(args: argparse.Namespace, settings: Settings) -> Identity:
    """The identity the options, the environment and ``--pki`` describe; ValueError naming
    what is missing or unreadable."""
    env = settings.client
    pki_claims: VihfClaims | None = None
    pki_key = pki_cert = None
    if args.pki is not None:
        from ..security.pki import load_test_pki

        try:
            pki = load_test_pki(args.pki)
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"cannot read the test PKI in {args.pki}: {exc}") from None
        try:
            pki_claims = pki.vihf_claims("", args.pki_professional)
        except StopIteration:
            raise ValueError(f"no professional {args.pki_professional!r} in the test PKI") from None
        pki_key, pki_cert = pki.key_file("institution"), pki.cert_file("institution")
    key = _first(args.vihf_key, env.vihf_key, pki_key)
    cert = _first(args.vihf_cert, env.vihf_cert, pki_cert)
    name_id = _first(args.professional_id, env.professional_id, pki_claims and pki_claims.name_id)
    structure = _first(args.structure_id, env.structure_id, pki_claims and pki_claims.structure_id)
    homologation = _first(
        args.homologation, env.homologation, pki_claims and pki_claims.homologation
    )
    missing = [
        label
        for label, value in (
            ("--vihf-key / DMP_XDS_VIHF_KEY", key),
            ("--vihf-cert / DMP_XDS_VIHF_CERT", cert),
            ("--professional-id / DMP_XDS_VIHF_PROFESSIONAL", name_id),
            ("--structure-id / DMP_XDS_VIHF_STRUCTURE", structure),
            ("--homologation / DMP_XDS_VIHF_HOMOLOGATION", homologation),
            (
                "--profession / DMP_XDS_VIHF_PROFESSION",
                pki_claims or _first(args.profession, env.profession),
            ),
        )
        if value is None
    ]
    if missing:
        raise ValueError("the VIHF needs " + ", ".join(missing) + " (or --pki DIR)")
    assert isinstance(key, Path) and isinstance(cert, Path)
    try:
        chain = _pem_chain(cert)
        issuer = x509.load_pem_x509_certificate(chain[0]).subject.rfc4514_string()
        credentials = SigningCredentials(key.read_bytes(), chain)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the VIHF signing key or certificate: {exc}") from None
    base = pki_claims or VihfClaims(patient_id="")
    profession = _first(args.profession, env.profession)
    specialty = _first(args.specialty, env.specialty)
    roles = base.roles
    if profession is not None:
        roles = ((str(profession), PROFESSION_SYSTEM, ""),)
        if specialty is not None:
            roles += ((str(specialty), SPECIALTY_SYSTEM, ""),)
    claims = base.with_(
        name_id=str(name_id),
        subject_name=_first(args.professional_name, env.professional_name, base.subject_name),
        roles=roles,
        structure_id=str(structure),
        homologation=str(homologation),
        issuer=issuer,
        authentication_mode=_first(args.authentication_mode, env.authentication_mode),
    )
    return Identity(claims, credentials)


def server_url(args: argparse.Namespace, settings: Settings) -> str:
    return str(args.url or settings.server_url)


def client_for(
    args: argparse.Namespace, settings: Settings, identity: Identity, patient_id: str
) -> XdsClient:
    """An XDS client whose calls carry VIHFs naming ``patient_id``. One HTTP session per
    client: a command acting for several patients swaps ``header_factory`` instead."""
    client = XdsClient(
        server_url(args, settings),
        header_factory=identity.headers_for(patient_id),
        timeout=args.timeout,
    )
    ca_file = args.ca_file or settings.client.ca_file
    if ca_file is not None:
        client.soap.session.verify = str(ca_file)
    return client
