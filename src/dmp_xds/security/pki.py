"""A test PKI made with ``cryptography``: a CA, an institution's signing certificate, a TLS
server certificate and a few health professionals' card-like certificates.

Why it exists: the server refuses every call without a verified VIHF and has no switch that
turns security off, so development, the test suite, the CLI and the benchmarks all need real
certificates that chain to a trust store. ``dmp-xds pki init <dir>`` writes one; the tests
create one per session. The layout mimics the French health PKI (IGC-Santé) only as far as
the VIHF needs it: professionals' certificates carry their national id (IdNat) as CN and their
profession as OU, the institution's certificate names its structure id as OU.

Nothing here is for production: keys are written unencrypted (mode 0600).

The building blocks (:func:`new_key`, :func:`create_ca`, :func:`issue`, :func:`create_crl`) are
public because the security tests build hostile variants with them: a rogue CA with the same
name, expired or wrongly-used certificates, revoked ones. RSA key generation dominates the cost
(tens of milliseconds per 2048-bit key), so the variants reuse keys.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .principal import (
    PROFESSION_SYSTEM,
    ROLE_CLASS_SYSTEM,
    ROLE_CODE_SYSTEM,
    SPECIALTY_SYSTEM,
    PatientRole,
)

if TYPE_CHECKING:
    from ..client.vihf import SigningCredentials, VihfClaims, VihfHeaders

PRIVATE_FILE_MODE = 0o600
# The homologation number the test PKI's software identity uses (and the server accepts when
# pointed at the test PKI through ``dmp-xds serve --pki``).
TEST_HOMOLOGATION = "DMP-XDS-TEST-0001"
TEST_STRUCTURE_ID = "10B0999991"  # 1 (FINESS) + a made-up FINESS number
# The hosting operator's patient portal: signs the VIHFs of patients and their legal
# representatives (security/authenticate.py trusts it when DMP_XDS_PATIENT_PORTALS names it).
TEST_PORTAL_ID = "10B0999992"
# Handles of vihf_claims() that act for the patient through the portal, not as professionals.
PATIENT = "patient"
REPRESENTATIVE = "representant"
TEST_REPRESENTATIVE_ID = f"{TEST_PORTAL_ID}/RL-0001"  # the portal's id of a legal guardian
TEST_ACTIVITY_SECTOR = "SA07^1.2.250.1.71.4.2.4"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@dataclass(frozen=True)
class Usage:
    """Key usage bits of an end-entity certificate (only the ones we issue)."""

    digital_signature: bool = True
    content_commitment: bool = False  # "nonRepudiation"
    key_encipherment: bool = False

    def extension(self) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=self.digital_signature,
            content_commitment=self.content_commitment,
            key_encipherment=self.key_encipherment,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )


SIGNING = Usage(digital_signature=True, content_commitment=True)
TLS_SERVER = Usage(digital_signature=True, key_encipherment=True)
CARD = Usage(digital_signature=True, content_commitment=True)
ENCRYPTION_ONLY = Usage(digital_signature=False, key_encipherment=True)


def name(**attributes: str) -> x509.Name:
    """An x509 Name from keyword attributes in the order given (``C``, ``O``, ``OU``, ``CN``,
    ``SN``, ``GN``)."""
    oids = {
        "C": NameOID.COUNTRY_NAME,
        "ST": NameOID.STATE_OR_PROVINCE_NAME,
        "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "CN": NameOID.COMMON_NAME,
        "SN": NameOID.SURNAME,
        "GN": NameOID.GIVEN_NAME,
    }
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in attributes.items()])


def _validity(
    not_before: dt.datetime | None, not_after: dt.datetime | None, days: int
) -> tuple[dt.datetime, dt.datetime]:
    start = not_before or (utcnow() - dt.timedelta(hours=1))
    return start, not_after or (start + dt.timedelta(days=days))


def create_ca(
    subject: x509.Name,
    *,
    key: rsa.RSAPrivateKey | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    path_length: int = 0,
    issuer: Issued | None = None,
) -> Issued:
    """A CA: self-signed (a root), or an intermediate signed by ``issuer``."""
    key = key or new_key()
    start, end = _validity(not_before, not_after, 3650)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    signer_key = issuer.key if issuer else key
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
        .sign(signer_key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue(
    ca: Issued,
    subject: x509.Name,
    *,
    key: rsa.RSAPrivateKey | None = None,
    usage: Usage | None = SIGNING,
    extended_usage: Sequence[x509.ObjectIdentifier] = (),
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    serial: int | None = None,
) -> Issued:
    """An end-entity certificate signed by ``ca``. ``usage=None`` omits the KeyUsage extension
    (a certificate the verifier must refuse)."""
    key = key or new_key()
    start, end = _validity(not_before, not_after, 825)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if usage is not None:
        builder = builder.add_extension(usage.extension(), critical=True)
    if extended_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(extended_usage)), critical=False)
    general_names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    general_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    if general_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def create_crl(
    ca: Issued,
    revoked_serials: Iterable[int] = (),
    *,
    last_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL of ``ca`` listing ``revoked_serials``."""
    now = last_update or (utcnow() - dt.timedelta(minutes=5))
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now)
        .next_update(next_update or (now + dt.timedelta(days=7)))
    )
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    return builder.sign(ca.key, hashes.SHA256())


# --- the test PKI on disk ----------------------------------------------------------------------


@dataclass(frozen=True)
class Professional:
    """What a VIHF says about a professional of the test PKI (and the card certificate's
    subject, CN = IdNat, OU = profession)."""

    key: str  # short handle: "medecin", "infirmier", ...
    name_id: str  # IdNat: 8 + RPPS
    family_name: str
    given_name: str
    profession: tuple[str, str, str]  # code, code system (TRE_G15), display
    specialty: tuple[str, str, str] | None = None  # TRE_R01 savoir-faire

    @property
    def subject_name(self) -> str:
        return f"{self.family_name} {self.given_name}"


_MEDECIN = ("10", PROFESSION_SYSTEM, "Médecin")
_GENERAL_PRACTICE = ("SM26", SPECIALTY_SYSTEM, "Qualifié en Médecine Générale (SM)")

PROFESSIONALS = (
    Professional(
        "medecin",
        "899900000011",
        "MEDECIN",
        "CLAIRE",
        _MEDECIN,
        _GENERAL_PRACTICE,
    ),
    Professional(
        "infirmier", "899900000029", "INFIRMIER", "PAUL", ("60", PROFESSION_SYSTEM, "Infirmier")
    ),
    # A second physician: the patient's médecin traitant in the DMP tests.
    Professional(
        "generaliste",
        "899900000045",
        "GENERALISTE",
        "JEAN",
        _MEDECIN,
        _GENERAL_PRACTICE,
    ),
    Professional(
        "sage-femme",
        "899900000037",
        "SAGEFEMME",
        "LUCIE",
        ("50", PROFESSION_SYSTEM, "Sage-Femme"),
    ),
    # A physician whose specialty is occupational medicine: the médecin du travail column.
    Professional(
        "medecin-travail",
        "899900000052",
        "TRAVAIL",
        "MARC",
        _MEDECIN,
        ("SM25", SPECIALTY_SYSTEM, "Médecine du travail (SM)"),
    ),
)


@dataclass
class TestPki:
    """A test PKI loaded from (or just written to) ``directory``.

    Files: ``trust/ca.pem`` (the trust store folder), ``ca.key``, ``crl/ca.crl`` (empty),
    ``institution.pem/.key`` (signs VIHFs in indirect mode), ``portal.pem/.key`` (the patient
    portal's, signs patients' VIHFs), ``server.pem/.key`` (TLS server for localhost),
    ``professionals/<key>.pem/.key`` (card-like certificates for direct mode) and
    ``pki.json`` (what the VIHF builder needs to know about each identity).
    """

    __test__ = False  # not a pytest test class, despite its name

    directory: Path
    ca: Issued
    institution: Issued
    server: Issued
    professionals: dict[str, Issued] = field(default_factory=dict)
    structure_id: str = TEST_STRUCTURE_ID
    activity_sector: str = TEST_ACTIVITY_SECTOR
    homologation: str = TEST_HOMOLOGATION
    portal: Issued | None = None  # None: a PKI written before portals existed
    portal_id: str = TEST_PORTAL_ID

    @property
    def trust_dir(self) -> Path:
        return self.directory / "trust"

    @property
    def crl_dir(self) -> Path:
        return self.directory / "crl"

    @property
    def ca_file(self) -> Path:
        return self.trust_dir / "ca.pem"

    def cert_file(self, handle: str) -> Path:
        """``institution``, ``portal``, ``server`` or a professional's key -> its certificate
        file."""
        if handle in ("institution", "portal", "server"):
            return self.directory / f"{handle}.pem"
        return self.directory / "professionals" / f"{handle}.pem"

    def key_file(self, handle: str) -> Path:
        return self.cert_file(handle).with_suffix(".key")

    def professional(self, handle: str) -> Professional:
        return next(p for p in PROFESSIONALS if p.key == handle)

    def issued(self, handle: str) -> Issued:
        """The certificate and key of ``institution``, ``portal`` or a professional."""
        if handle == "institution":
            return self.institution
        if handle == "portal":
            if self.portal is None:
                raise ValueError(f"the test PKI in {self.directory} has no portal: re-run init")
            return self.portal
        return self.professionals[handle]

    def credentials(self, handle: str = "institution") -> SigningCredentials:
        """Key and certificate of ``handle`` for signing a VIHF."""
        from ..client.vihf import SigningCredentials

        issued = self.issued(handle)
        return SigningCredentials(issued.key_pem, (issued.cert_pem,))

    def vihf_claims(
        self, patient_id: str, professional: str = "medecin", **changes: Any
    ) -> VihfClaims:
        """What a VIHF of this PKI says for ``professional`` acting for ``patient_id``: in
        indirect mode the institution issues it, in direct mode (``authentication_mode=
        "DIRECTE"``) the professional's card does. ``patient`` and ``representant`` act for
        the patient (HL7 roles PAT and GUARD), in a VIHF the patient portal issues."""
        from ..client.vihf import VihfClaims

        if professional in (PATIENT, REPRESENTATIVE):
            patient = professional == PATIENT
            role = (
                (PatientRole.PATIENT.value, ROLE_CLASS_SYSTEM, "Patient")
                if patient
                else (PatientRole.LEGAL_REPRESENTATIVE.value, ROLE_CODE_SYSTEM, "Guardian")
            )
            return VihfClaims(
                patient_id=patient_id,
                name_id=patient_id.split("^", 1)[0] if patient else TEST_REPRESENTATIVE_ID,
                subject_name="PATIENT TEST" if patient else "REPRESENTANT TEST",
                roles=(role,),
                structure_id=self.portal_id,
                activity_sector=self.activity_sector,
                homologation=self.homologation,
                issuer=self.issued("portal").cert.subject.rfc4514_string(),
                authentication_mode="INDIRECTE",
            ).with_(**changes)
        pro = self.professional(professional)
        direct = changes.get("authentication_mode") == "DIRECTE"
        issuer = self.professionals[professional] if direct else self.institution
        claims = VihfClaims(
            patient_id=patient_id,
            name_id=pro.name_id,
            subject_name=pro.subject_name,
            roles=(pro.profession, pro.specialty) if pro.specialty else (pro.profession,),
            structure_id=self.structure_id,
            activity_sector=self.activity_sector,
            homologation=self.homologation,
            issuer=issuer.cert.subject.rfc4514_string(),
        )
        return claims.with_(**changes)

    def vihf_headers(
        self,
        patient_id: str,
        professional: str = "medecin",
        *,
        signer: str | None = "issuer",
        algorithm: str = "rsa-sha256",
        **changes: Any,
    ) -> VihfHeaders:
        """An ``XdsClient`` header factory: a fresh VIHF per call, signed by ``signer``
        (``institution``, ``portal``, a professional's handle, None for an unsigned one, or
        by default whoever issues that identity's VIHFs: the portal for the patient and the
        representative, the institution for professionals)."""
        from ..client.vihf import VihfHeaders

        if signer == "issuer":
            signer = "portal" if professional in (PATIENT, REPRESENTATIVE) else "institution"
        return VihfHeaders(
            self.vihf_claims(patient_id, professional, **changes),
            self.credentials(signer) if signer else None,
            algorithm,
        )

    def server_env(self) -> dict[str, str]:
        """The ``DMP_XDS_*`` settings that point a server at this PKI (no TLS listener)."""
        return {
            "DMP_XDS_TRUST_STORE": str(self.trust_dir),
            "DMP_XDS_CRL_DIR": str(self.crl_dir),
            "DMP_XDS_HOMOLOGATED_SOFTWARE": self.homologation,
            "DMP_XDS_PATIENT_PORTALS": self.portal_id,
        }

    def tls_env(self) -> dict[str, str]:
        """Settings for the server's own TLS listener, asking clients for certificates."""
        return {
            "DMP_XDS_TLS_CERT": str(self.cert_file("server")),
            "DMP_XDS_TLS_KEY": str(self.key_file("server")),
            "DMP_XDS_TLS_CLIENT_CA": str(self.ca_file),
        }


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if private:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _save(pki: TestPki, handle: str, issued: Issued) -> None:
    _write(pki.cert_file(handle), issued.cert_pem)
    _write(pki.key_file(handle), issued.key_pem, private=True)


def init_test_pki(directory: Path) -> TestPki:
    """Create a fresh test PKI in ``directory`` (existing files are overwritten)."""
    directory = directory.resolve()
    ca = create_ca(name(C="FR", O="DMP-XDS TEST", OU="0002 TEST", CN="DMP-XDS TEST CA"))
    institution = issue(
        ca,
        name(C="FR", O="CENTRE DE SANTE DE TEST", OU=TEST_STRUCTURE_ID, CN="VIHF SIGN TEST"),
        usage=SIGNING,
    )
    portal = issue(
        ca,
        name(C="FR", O="PORTAIL PATIENT DE TEST", OU=TEST_PORTAL_ID, CN="VIHF SIGN PORTAL TEST"),
        usage=SIGNING,
    )
    server = issue(
        ca,
        name(C="FR", O="DMP-XDS TEST", CN="localhost"),
        usage=TLS_SERVER,
        extended_usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        dns_names=["localhost"],
        ip_addresses=["127.0.0.1", "::1"],
    )
    pki = TestPki(directory, ca, institution, server, portal=portal)
    for pro in PROFESSIONALS:
        subject = x509.Name(
            [
                x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")]),
                x509.RelativeDistinguishedName(
                    [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "DMP-XDS TEST")]
                ),
                x509.RelativeDistinguishedName(
                    [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, pro.profession[2])]
                ),
                # As on a CPS card: CN, SN and GN in one multi-valued RDN.
                x509.RelativeDistinguishedName(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, pro.name_id),
                        x509.NameAttribute(NameOID.SURNAME, pro.family_name),
                        x509.NameAttribute(NameOID.GIVEN_NAME, pro.given_name),
                    ]
                ),
            ]
        )
        pki.professionals[pro.key] = issue(
            ca, subject, usage=CARD, extended_usage=[ExtendedKeyUsageOID.CLIENT_AUTH]
        )
    _write(pki.ca_file, ca.cert_pem)
    _write(directory / "ca.key", ca.key_pem, private=True)
    _write(
        pki.crl_dir / "ca.crl",
        create_crl(ca, next_update=utcnow() + dt.timedelta(days=3650)).public_bytes(
            serialization.Encoding.PEM
        ),
    )
    _save(pki, "institution", institution)
    _save(pki, "portal", portal)
    _save(pki, "server", server)
    for handle, issued in pki.professionals.items():
        _save(pki, handle, issued)
    manifest = {
        "structure_id": pki.structure_id,
        "activity_sector": pki.activity_sector,
        "homologation": pki.homologation,
        "portal_id": pki.portal_id,
        "professionals": [p.key for p in PROFESSIONALS],
    }
    _write(directory / "pki.json", json.dumps(manifest, indent=2).encode())
    return pki


def _load(cert_file: Path, key_file: Path) -> Issued:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{key_file}: not an RSA key")
    return Issued(cert, key)


def load_test_pki(directory: Path) -> TestPki:
    """Read a test PKI written by :func:`init_test_pki`."""
    directory = directory.resolve()
    manifest = json.loads((directory / "pki.json").read_text())
    pki = TestPki(
        directory,
        _load(directory / "trust" / "ca.pem", directory / "ca.key"),
        _load(directory / "institution.pem", directory / "institution.key"),
        _load(directory / "server.pem", directory / "server.key"),
        structure_id=manifest["structure_id"],
        activity_sector=manifest["activity_sector"],
        homologation=manifest["homologation"],
    )
    if "portal_id" in manifest:
        pki.portal_id = manifest["portal_id"]
        pki.portal = _load(pki.cert_file("portal"), pki.key_file("portal"))
    for handle in manifest["professionals"]:
        pki.professionals[handle] = _load(pki.cert_file(handle), pki.key_file(handle))
    return pki
