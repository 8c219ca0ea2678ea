"""One request in, one :class:`Principal` out, or a ``wsse`` fault: the whole VIHF check.

Order, cheapest and least trusting first:

1. find the assertion exactly where it must be (:func:`.signature.locate`: no wrapping, unique
   ID, one signature at its place), honour an optional ``wsu:Timestamp``;
2. read the attributes (form only, :mod:`.vihf`);
3. authenticate, by mode:
   - INDIRECTE / INDIRECTE_RENFORCEE: the assertion must be signed by a certificate that chains
     to the trust store with a signing key usage, the signature must verify with *that*
     certificate's key, and the certificate must be the structure's the VIHF names;
   - DIRECTE: the professional's card certificate must be on the TLS connection (our own TLS
     listener, or forwarded by a trusted proxy), chain to the trust store, and name the same
     professional (CN = the assertion's NameID); a signature, when present, is verified too;
   a patient role (HL7 ``PAT``, or ``GUARD`` for a legal representative) is vouched for by
   a patient portal the server trusts only, in INDIRECTE mode, and ``PAT`` names the patient
   themself;
4. the validity window: IssueInstant, Conditions NotBefore/NotOnOrAfter and a maximum age,
   each with the configured clock skew;
5. the software's homologation number is on the configured list;
6. last, the replay cache: only an assertion that passed everything consumes its id.

Nothing here writes anything except the replay row, and only for an accepted assertion; it
commits at once, before any handler runs (security/replay.py says why).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import logging
import re
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import Connection, Engine

from ..config import Settings
from ..namespaces import WSU
from ..soap.envelope import SoapRequest
from .faults import failed, invalid
from .principal import (
    AccessMode,
    AuthenticationMode,
    CertificateIdentity,
    PatientRole,
    Principal,
)
from .replay import ReplayCache
from .signature import AlgorithmPolicy, check_structure, locate, verify
from .trust import (
    Purpose,
    TrustStore,
    common_names,
    load_certificate,
    utcnow,
)
from .vihf import Vihf, parse_instant, read_vihf

log = logging.getLogger("dmp_xds.security")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_PEM_BODY = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``DMP_XDS_TRUSTED_PROXIES`` entries: addresses or CIDR networks."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"trusted proxy {value!r} is not an IP address or network") from None
    return tuple(networks)


@dataclass(frozen=True)
class SecurityPolicy:
    algorithms: AlgorithmPolicy
    homologated: frozenset[str]
    clock_skew: dt.timedelta
    max_assertion_age: dt.timedelta
    trusted_proxies: tuple[Network, ...] = ()
    client_cert_header: str = "X-SSL-Client-Cert"
    patient_portals: frozenset[str] = frozenset()  # DMP_XDS_PATIENT_PORTALS
    motive_required: frozenset[AccessMode] = frozenset()  # DMP_XDS_MOTIVE_REQUIRED

    @classmethod
    def from_settings(cls, settings: Settings) -> SecurityPolicy:
        try:
            motive_required = frozenset(
                AccessMode(mode.strip().lower()) for mode in settings.motive_required
            )
        except ValueError:
            raise ValueError(
                "DMP_XDS_MOTIVE_REQUIRED lists access modes among bris_de_glace, centre_15; "
                f"got {', '.join(settings.motive_required)!r}"
            ) from None
        return cls(
            algorithms=AlgorithmPolicy.from_names(settings.signature_algorithms),
            homologated=frozenset(settings.homologated_software),
            clock_skew=dt.timedelta(seconds=settings.clock_skew_s),
            max_assertion_age=dt.timedelta(seconds=settings.assertion_max_age_s),
            trusted_proxies=parse_networks(settings.trusted_proxies),
            client_cert_header=settings.client_cert_header,
            patient_portals=frozenset(settings.patient_portals),
            motive_required=motive_required - {AccessMode.NORMAL},
        )

    @property
    def header_key(self) -> str:
        """The WSGI environ key of the client certificate header."""
        return "HTTP_" + self.client_cert_header.upper().replace("-", "_")


class Authenticator:
    """Checks VIHFs for one worker process (its caches live as long as the process)."""

    def __init__(
        self,
        trust: TrustStore | None,
        replay: ReplayCache | None,
        policy: SecurityPolicy,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.trust = trust
        self.replay = replay
        self.policy = policy
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine) -> Authenticator:
        policy = SecurityPolicy.from_settings(settings)
        trust = None
        if settings.trust_store is not None:
            trust = TrustStore.from_paths(settings.trust_store, settings.crl_path)
        return cls(trust, ReplayCache(engine), policy)

    def problems(self) -> list[str]:
        """Configuration that makes every call fail (said loudly at start-up)."""
        found = []
        if self.trust is None:
            found.append("no trust store (DMP_XDS_TRUST_STORE): every call is refused")
        if not self.policy.homologated:
            found.append(
                "no homologated software (DMP_XDS_HOMOLOGATED_SOFTWARE): every call is refused"
            )
        return found

    # --- the check ---------------------------------------------------------------------------
    def authenticate(
        self, request: SoapRequest, environ: dict[str, Any], db: Connection | None = None
    ) -> Principal:
        if self.trust is None:
            raise failed(
                "configuration",
                "this server has no trust store configured (DMP_XDS_TRUST_STORE); "
                "it refuses every call",
            )
        now = self.clock()
        forwarded = self._forwarded(environ)  # provenance checked in every mode
        located = locate(request.envelope, request.header)
        if located.timestamp is not None:
            check_timestamp(located.timestamp, now, self.policy.clock_skew)
        vihf = read_vihf(located.assertion)
        principal = vihf.principal
        mode = principal.authentication_mode
        if located.signature is None and mode is not AuthenticationMode.DIRECTE:
            raise failed(
                "signature_missing",
                f"a VIHF in {mode.value} mode must be signed by the institution's certificate",
            )
        if located.signature is not None:
            facts = check_structure(located.signature, located.assertion_id, self.policy.algorithms)
            validated = self.trust.validate_der(
                facts.certificates, Purpose.SIGNATURE, now, what="a KeyInfo certificate"
            )
            verify(
                located.signature, located.assertion, validated.xmlsec_key, self.policy.algorithms
            )
            principal = replace(principal, signer=validated.identity)
            if mode is not AuthenticationMode.DIRECTE:
                _check_structure_binding(principal.structure_id, validated.leaf)
        if mode is AuthenticationMode.DIRECTE:
            cert = self._client_certificate(environ, forwarded)
            principal = replace(principal, tls_client=self._direct(principal, cert, now))
        _check_patient_role(principal, self.policy.patient_portals)
        if principal.access_mode in self.policy.motive_required and not principal.access_motive:
            raise failed(
                "access_motive",
                f"an access in {principal.access_mode.value} mode must give its motive "
                "(attribute Mode_Acces_Raison, or the PurposeOfUse's originalText)",
            )
        expires = self._window(vihf, now)
        principal = replace(principal, expires=expires)
        homologation = principal.software.homologation
        if homologation not in self.policy.homologated:
            raise failed(
                "homologation",
                f"software homologation number {homologation!r} is not in the list of "
                "homologated software",
            )
        if self.replay is not None and not self.replay.first_use(
            vihf.assertion_id, expires + self.policy.clock_skew, now, db
        ):
            raise failed("replay", f"assertion {vihf.assertion_id} has already been used")
        return principal

    def _window(self, vihf: Vihf, now: dt.datetime) -> dt.datetime:
        """Check the validity window; return its end (when the assertion stops being valid)."""
        skew = self.policy.clock_skew
        if vihf.issue_instant > now + skew:
            raise failed("conditions", "the assertion's IssueInstant is in the future")
        if vihf.not_before and vihf.not_on_or_after and vihf.not_on_or_after <= vihf.not_before:
            raise invalid("conditions", "Conditions NotOnOrAfter is not after NotBefore")
        if vihf.not_before and now + skew < vihf.not_before:
            raise failed("conditions", "the assertion is not valid yet (Conditions NotBefore)")
        end = vihf.issue_instant + self.policy.max_assertion_age
        if vihf.not_on_or_after and vihf.not_on_or_after < end:
            end = vihf.not_on_or_after
            if now - skew >= end:
                raise failed("conditions", "the assertion has expired (Conditions NotOnOrAfter)")
        if now - skew >= end:
            raise failed(
                "conditions",
                f"the assertion is older than {int(self.policy.max_assertion_age.total_seconds())}"
                " s (IssueInstant)",
            )
        return end

    def _direct(
        self, principal: Principal, cert: x509.Certificate | None, now: dt.datetime
    ) -> CertificateIdentity:
        assert self.trust is not None
        if cert is None:
            raise failed(
                "tls_client",
                "DIRECTE authentication needs the professional's card certificate on the TLS "
                "connection; none was presented",
            )
        validated = self.trust.validate(cert, [], Purpose.TLS_CLIENT, now)
        if common_names(cert) != [principal.name_id]:
            raise failed(
                "tls_client",
                "the TLS client certificate names another professional than the VIHF's NameID",
            )
        return validated.identity

    def _forwarded(self, environ: dict[str, Any]) -> str | None:
        """The client certificate header, if any; refused (not ignored) unless it comes from a
        trusted proxy: anyone can send a header."""
        header = (environ.get(self.policy.header_key) or "").strip()
        if not header:
            return None
        remote = environ.get("REMOTE_ADDR", "")
        if not self._trusted_proxy(remote):
            raise failed(
                "tls_client",
                f"{self.policy.client_cert_header} sent from {remote}, which is not a "
                "trusted proxy (DMP_XDS_TRUSTED_PROXIES)",
            )
        return header

    def _client_certificate(
        self, environ: dict[str, Any], forwarded: str | None
    ) -> x509.Certificate | None:
        """The TLS client certificate: forwarded by a trusted proxy, or from our own TLS
        listener (gunicorn's socket)."""
        if forwarded:
            return _forwarded_certificate(forwarded, self.policy.client_cert_header)
        getpeercert = getattr(environ.get("gunicorn.socket"), "getpeercert", None)
        if getpeercert is None:
            return None
        der = getpeercert(binary_form=True)
        return load_certificate(der, "the TLS client certificate") if der else None

    def _trusted_proxy(self, remote: str) -> bool:
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return False
        return any(address in network for network in self.policy.trusted_proxies)


def _check_structure_binding(structure_id: str, signer: x509.Certificate) -> None:
    """In indirect modes the institution vouches for its own structure only: its signing
    certificate names the structure in OU (as IGC-Santé "personne morale" certificates do, and
    as the official samples show), and that must be the VIHF's ``Identifiant_Structure``."""
    units = [
        str(a.value)
        for a in signer.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    ]
    if structure_id not in units:
        raise failed(
            "structure",
            "Identifiant_Structure is not the structure of the certificate that signed the VIHF "
            "(its OU)",
        )


def _check_patient_role(principal: Principal, portals: frozenset[str]) -> None:
    """A VIHF that acts for the patient (:attr:`Principal.patient_role`) must come from a
    patient portal of the hosting operator (``DMP_XDS_PATIENT_PORTALS``), signed by it in
    plain INDIRECTE mode: the portal authenticated the person, and vouches for it the way an
    institution vouches for its professionals. A patient (``PAT``) can only be the patient of
    the record (the NameID is the resource-id's identifier); a legal representative is named
    by the portal.

    Refused here, as a failed authentication, rather than by access policy: the signer is not
    one the server trusts to say that a patient is calling, so no Principal may claim it, and
    policy may take a patient Principal as proven.
    """
    role = principal.patient_role
    if role is None:
        return
    if principal.authentication_mode is not AuthenticationMode.INDIRECTE:
        raise failed(
            "patient_role",
            f"role {role.value} is only accepted in INDIRECTE mode, from a patient portal",
        )
    if principal.structure_id not in portals:
        raise failed(
            "patient_role",
            f"role {role.value} is only accepted from a patient portal this server trusts "
            "(DMP_XDS_PATIENT_PORTALS); Identifiant_Structure is not one",
        )
    if role is PatientRole.PATIENT and principal.name_id != principal.patient.id:
        raise failed(
            "patient_role",
            "a patient's VIHF must name the patient of the resource-id as its Subject NameID",
        )


def _forwarded_certificate(header: str, name: str) -> x509.Certificate:
    """A URL-escaped PEM (nginx ``$ssl_client_escaped_cert``); a PEM whose line breaks became
    spaces or tabs (other proxies) is accepted too."""
    data = urllib.parse.unquote(header).encode("ascii", "replace")
    match = _PEM_BODY.search(data)
    if match is None:
        raise invalid("tls_client", f"{name} does not hold a PEM certificate")
    try:
        der = base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        raise invalid("tls_client", f"{name} does not hold a PEM certificate") from None
    return load_certificate(der, f"the certificate in {name}")


def check_timestamp(timestamp: Any, now: dt.datetime, skew: dt.timedelta) -> None:
    """WS-Security ``wsu:Timestamp``: Created not in the future, Expires not past."""
    created = [c for c in timestamp if c.tag == f"{{{WSU}}}Created"]
    expires = [c for c in timestamp if c.tag == f"{{{WSU}}}Expires"]
    if len(created) > 1 or len(expires) > 1:
        raise invalid("timestamp", "wsu:Timestamp has more than one Created or Expires")
    created_at = parse_instant(created[0].text, "wsu:Created") if created else None
    expires_at = parse_instant(expires[0].text, "wsu:Expires") if expires else None
    if created_at and expires_at and expires_at <= created_at:
        raise invalid("timestamp", "wsu:Timestamp Expires is not after Created")
    if created_at and created_at > now + skew:
        raise failed("timestamp", "wsu:Timestamp Created is in the future")
    if expires_at and now - skew >= expires_at:
        raise failed("timestamp", "the message has expired (wsu:Timestamp Expires)")
