"""The trust store: which certificates may sign a VIHF or authenticate a professional on TLS.

Chains are validated with ``cryptography.x509.verification`` (RFC 5280 path building, validity
at the current time, CA constraints) against the PEM CA certificates of one folder
(``DMP_XDS_TRUST_STORE``); every certificate there is a trust anchor. The end-entity policy is
ours rather than the Web PKI's, because health PKI certificates are not web certificates:

- a VIHF signer needs KeyUsage digitalSignature or nonRepudiation; its ExtendedKeyUsage, when
  present, is not constrained (IGC-Santé signing certificates carry emailProtection);
- a TLS client certificate (direct mode) needs KeyUsage digitalSignature and, when it has an
  ExtendedKeyUsage, clientAuth.

CRLs (``DMP_XDS_CRL_DIR``: a folder of PEM or DER CRLs, or one file) are checked for every
certificate of the chain whose issuer has one there; a CRL must verify with the issuer's key, and
a CRL past its nextUpdate makes the certificates it covers refused (fail closed: a stale list
cannot say they are still good). The folder is re-read when its files change.

Validation results are cached by the fingerprints of the presented certificates, for at most
``cache_ttl_s`` and never beyond the chain's or the CRL's own expiry, together with the
``xmlsec.Key`` of the leaf: verifying a VIHF from a known signer then costs no X.509 work.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from .faults import failed, invalid
from .principal import CertificateIdentity

log = logging.getLogger("dmp_xds.security")
_SHA256 = hashes.SHA256()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Purpose(Enum):
    SIGNATURE = "VIHF signing"
    TLS_CLIENT = "TLS client"


def _signing_usage(_policy: object, _cert: x509.Certificate, usage: x509.KeyUsage) -> None:
    if not (usage.digital_signature or usage.content_commitment):
        raise ValueError("KeyUsage allows neither digitalSignature nor nonRepudiation")


def _tls_usage(_policy: object, _cert: x509.Certificate, usage: x509.KeyUsage) -> None:
    if not usage.digital_signature:
        raise ValueError("KeyUsage does not allow digitalSignature")


def _any_eku(_policy: object, _cert: x509.Certificate, _eku: x509.ExtendedKeyUsage | None) -> None:
    return None


def _client_auth_eku(
    _policy: object, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None
) -> None:
    if eku is not None and not (
        ExtendedKeyUsageOID.CLIENT_AUTH in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku
    ):
        raise ValueError("ExtendedKeyUsage does not allow clientAuth")


def _ee_policy(purpose: Purpose) -> ExtensionPolicy:
    usage = _signing_usage if purpose is Purpose.SIGNATURE else _tls_usage
    eku = _any_eku if purpose is Purpose.SIGNATURE else _client_auth_eku
    return (
        ExtensionPolicy.webpki_defaults_ee()
        .require_present(x509.KeyUsage, Criticality.AGNOSTIC, usage)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, eku)
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    )


_EE_POLICIES = {p: _ee_policy(p) for p in Purpose}


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(_SHA256).hex()


def identity(cert: x509.Certificate) -> CertificateIdentity:
    return CertificateIdentity(cert.subject.rfc4514_string(), fingerprint(cert))


def common_names(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def load_certificate(data: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise invalid("certificate", f"{what} is not a readable X.509 certificate") from None


def split_chain(
    certs: Sequence[x509.Certificate],
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The end-entity certificate (the one that issued no other) and the rest, in any order."""
    if len(certs) == 1:
        return certs[0], []
    leaves = [c for c in certs if not any(o is not c and o.issuer == c.subject for o in certs)]
    if len(leaves) != 1:
        raise invalid("key_info", "cannot tell which KeyInfo certificate signed the VIHF")
    leaf = leaves[0]
    return leaf, [c for c in certs if c is not leaf]


@dataclass(frozen=True)
class Validated:
    """A chain that passed: the leaf, its identity, and until when the result may be reused."""

    leaf: x509.Certificate
    identity: CertificateIdentity
    valid_from: dt.datetime
    valid_until: dt.datetime
    crl_generation: int
    _key: list[xmlsec.Key] = field(default_factory=list, repr=False, compare=False)

    @property
    def xmlsec_key(self) -> xmlsec.Key:
        """The leaf's public key for xmlsec, made once per validated chain.

        The bare key (SubjectPublicKeyInfo), not the certificate: xmlsec copies the key into
        every verification context, and a key that carries its certificate costs 47 us to copy
        against 1 us for the bare one. The certificate has been validated here already."""
        if not self._key:
            der = self.leaf.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            self._key.append(xmlsec.Key.from_memory(der, xmlsec.KeyFormat.DER))
        return self._key[0]


class CrlSet:
    """The CRLs of one folder (or file), re-read at most every ``reload_s`` when changed."""

    def __init__(self, path: Path, *, reload_s: float = 60.0) -> None:
        self.path = path
        self.reload_s = reload_s
        self.generation = 0
        self._stamp: tuple = ()
        self._checked_at = -1e18
        self._by_issuer: dict[x509.Name, list[x509.CertificateRevocationList]] = {}
        self._lock = threading.Lock()
        self.refresh(force=True)

    def _files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            raise ValueError(f"CRL location {self.path} is neither a file nor a folder")
        return sorted(p for p in self.path.iterdir() if p.is_file() and not p.name.startswith("."))

    def refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked_at < self.reload_s:
            return
        with self._lock:
            self._checked_at = now
            files = self._files()
            stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
            if stamp == self._stamp and not force:
                return
            by_issuer: dict[x509.Name, list[x509.CertificateRevocationList]] = {}
            try:
                for path in files:
                    for crl in _read_crls(path):
                        by_issuer.setdefault(crl.issuer, []).append(crl)
            except ValueError:
                if force:
                    raise
                # A file half-copied into the folder: keep the lists we have (each still bound
                # by its own nextUpdate) and try again at the next interval.
                log.error(
                    "unreadable CRL; keeping the previous ones", extra={"crl_path": str(path)}
                )
                return
            self._by_issuer = by_issuer
            self._stamp = stamp
            self.generation += 1
            log.info(
                "CRLs loaded",
                extra={"crl_path": str(self.path), "issuers": len(by_issuer), "files": len(files)},
            )

    def check(self, chain: Sequence[x509.Certificate], now: dt.datetime) -> dt.datetime | None:
        """Refuse a revoked certificate of ``chain`` (leaf first, anchor last); return the
        earliest nextUpdate of the CRLs used (when the answer must be asked again)."""
        earliest: dt.datetime | None = None
        for cert, issuer in itertools.pairwise(chain):
            crls = self._by_issuer.get(cert.issuer)
            if not crls:
                continue
            good = [c for c in crls if c.is_signature_valid(issuer.public_key())]  # type: ignore[arg-type]
            if not good:
                raise failed(
                    "revocation", f"the CRL of {cert.issuer.rfc4514_string()} does not verify"
                )
            crl = max(good, key=lambda c: c.last_update_utc)
            next_update = crl.next_update_utc
            if next_update is not None and next_update <= now:
                raise failed(
                    "revocation",
                    f"the CRL of {cert.issuer.rfc4514_string()} expired at "
                    f"{next_update.isoformat()}; certificates it covers are refused",
                )
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                raise failed(
                    "revocation",
                    f"certificate {cert.subject.rfc4514_string()} (serial "
                    f"{cert.serial_number:x}) is revoked",
                )
            if next_update is not None and (earliest is None or next_update < earliest):
                earliest = next_update
        return earliest


def _read_crls(path: Path) -> list[x509.CertificateRevocationList]:
    """The CRLs of one file (PEM, possibly several, or DER); ValueError when unreadable."""
    data = path.read_bytes()
    if b"-----BEGIN X509 CRL-----" in data:
        blocks = data.split(b"-----END X509 CRL-----")
        return [
            x509.load_pem_x509_crl(block + b"-----END X509 CRL-----\n")
            for block in blocks
            if b"-----BEGIN X509 CRL-----" in block
        ]
    return [x509.load_der_x509_crl(data)]


def read_anchors(folder: Path) -> list[x509.Certificate]:
    """Every certificate of every PEM file of ``folder`` (the trust anchors)."""
    if not folder.is_dir():
        raise ValueError(f"trust store {folder} is not a folder")
    anchors: list[x509.Certificate] = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in (".pem", ".crt", ".cer"):
            anchors += x509.load_pem_x509_certificates(path.read_bytes())
    if not anchors:
        raise ValueError(f"trust store {folder} holds no PEM certificate")
    return anchors


class TrustStore:
    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        crls: CrlSet | None = None,
        *,
        cache_ttl_s: float = 300.0,
        cache_size: int = 1024,
    ) -> None:
        self.anchors = list(anchors)
        self.store = Store(self.anchors)
        self.crls = crls
        self.cache_ttl = dt.timedelta(seconds=cache_ttl_s)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, Validated] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_paths(cls, folder: Path, crl_path: Path | None = None) -> TrustStore:
        return cls(read_anchors(folder), CrlSet(crl_path) if crl_path else None)

    def validate(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        purpose: Purpose,
        now: dt.datetime | None = None,
    ) -> Validated:
        """Validate ``leaf`` for ``purpose`` or raise ``wsse:FailedAuthentication``."""
        key = (purpose, fingerprint(leaf), *(fingerprint(c) for c in intermediates))
        return self._cached(key, lambda: (leaf, list(intermediates)), purpose, now)

    def validate_der(
        self,
        ders: Sequence[bytes],
        purpose: Purpose,
        now: dt.datetime | None = None,
        *,
        what: str = "a certificate",
    ) -> Validated:
        """:meth:`validate` for certificates as they came (DER, leaf and intermediates in any
        order: :func:`split_chain`). The cache is keyed by the SHA-256 of the bytes, so a chain
        seen before is neither parsed nor fingerprinted again: each costs 15-20 us per
        certificate, on every call (a VIHF's KeyInfo is the same chain call after call)."""
        key = (purpose, *(hashlib.sha256(der).hexdigest() for der in ders))
        return self._cached(
            key, lambda: split_chain([load_certificate(der, what) for der in ders]), purpose, now
        )

    def _cached(
        self,
        key: tuple,
        chain: Callable[[], tuple[x509.Certificate, list[x509.Certificate]]],
        purpose: Purpose,
        now: dt.datetime | None,
    ) -> Validated:
        """The result for ``key`` while it holds (validity window, CRL generation), else the
        validation of ``chain()`` (leaf, intermediates), remembered."""
        now = now or utcnow()
        generation = self._crl_generation()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        if (
            hit is not None
            and hit.crl_generation == generation
            and hit.valid_from <= now < hit.valid_until
        ):
            return hit
        leaf, intermediates = chain()
        result = self._validate(leaf, intermediates, purpose, now, generation)
        with self._lock:
            self._cache[key] = result
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return result

    def _crl_generation(self) -> int:
        if self.crls is None:
            return 0
        self.crls.refresh()
        return self.crls.generation

    def _validate(
        self,
        leaf: x509.Certificate,
        intermediates: list[x509.Certificate],
        purpose: Purpose,
        now: dt.datetime,
        generation: int,
    ) -> Validated:
        subject = leaf.subject.rfc4514_string()
        if now < leaf.not_valid_before_utc:
            raise failed(
                "certificate",
                f"the {purpose.value} certificate {subject} is not valid before "
                f"{leaf.not_valid_before_utc.isoformat()}",
            )
        if now >= leaf.not_valid_after_utc:
            raise failed(
                "certificate",
                f"the {purpose.value} certificate {subject} expired on "
                f"{leaf.not_valid_after_utc.isoformat()}",
            )
        verifier = (
            PolicyBuilder()
            .store(self.store)
            .time(now.replace(microsecond=0))
            .max_chain_depth(4)
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_EE_POLICIES[purpose]
            )
            .build_client_verifier()
        )
        try:
            chain = verifier.verify(leaf, intermediates).chain
        except VerificationError as exc:
            reason = str(exc).split(" (encountered processing", 1)[0]
            raise failed(
                "certificate",
                f"the {purpose.value} certificate {subject} is not trusted: {reason}",
            ) from None
        valid_until = min([now + self.cache_ttl, *(c.not_valid_after_utc for c in chain)])
        if self.crls is not None:
            next_update = self.crls.check(chain, now)
            if next_update is not None:
                valid_until = min(valid_until, next_update)
        valid_from = max(c.not_valid_before_utc for c in chain)
        return Validated(leaf, identity(leaf), valid_from, valid_until, generation)
