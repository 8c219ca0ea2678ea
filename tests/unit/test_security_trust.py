"""The trust store: chains, validity, key usage, CRLs and the cache of validated chains."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from dmp_xds.client.vihf import SigningCredentials, VihfHeaders
from dmp_xds.security import pki as P
from dmp_xds.security.faults import FAILED_AUTHENTICATION, SecurityFault
from dmp_xds.security.trust import CrlSet, Purpose, TrustStore, split_chain
from dmp_xds.soap.xmlparser import serialize
from tests.fixtures.metadata import new_patient_id
from tests.fixtures.security import authenticator, envelope, soap_request

NOW = P.utcnow()


@pytest.fixture(scope="module")
def spare_key(test_pki):
    """One key reused by every hostile certificate (key generation is the slow part)."""
    return test_pki.institution.key


@pytest.fixture
def store(test_pki) -> TrustStore:
    return TrustStore([test_pki.ca.cert])


def refused(store: TrustStore, issued: P.Issued, purpose=Purpose.SIGNATURE, now=None) -> str:
    with pytest.raises(SecurityFault) as caught:
        store.validate(issued.cert, [], purpose, now or NOW)
    assert caught.value.subcode == FAILED_AUTHENTICATION
    return caught.value.reason


def test_institution_and_professionals_chain(test_pki, store) -> None:
    validated = store.validate(test_pki.institution.cert, [], Purpose.SIGNATURE, NOW)
    assert validated.identity.subject.startswith("CN=VIHF SIGN TEST")
    for issued in test_pki.professionals.values():
        store.validate(issued.cert, [], Purpose.TLS_CLIENT, NOW)
        store.validate(issued.cert, [], Purpose.SIGNATURE, NOW)


def test_rogue_ca_with_the_same_name_is_not_trusted(test_pki, store, spare_key) -> None:
    rogue = P.create_ca(test_pki.ca.cert.subject, key=spare_key)
    assert rogue.cert.subject == test_pki.ca.cert.subject
    forged = P.issue(rogue, test_pki.institution.cert.subject, key=spare_key)
    assert "not trusted" in refused(store, forged)
    # Even when the rogue CA comes along as an "intermediate" in KeyInfo.
    with pytest.raises(SecurityFault):
        store.validate(forged.cert, [rogue.cert], Purpose.SIGNATURE, NOW)


def test_expired_and_not_yet_valid(test_pki, store, spare_key) -> None:
    expired = P.issue(
        test_pki.ca,
        P.name(CN="expired"),
        key=spare_key,
        not_before=NOW - dt.timedelta(days=30),
        not_after=NOW - dt.timedelta(days=1),
    )
    assert "expired" in refused(store, expired)
    future = P.issue(
        test_pki.ca,
        P.name(CN="future"),
        key=spare_key,
        not_before=NOW + dt.timedelta(days=1),
        not_after=NOW + dt.timedelta(days=30),
    )
    assert "not valid before" in refused(store, future)


def test_certificate_valid_when_the_ca_has_expired(test_pki, spare_key) -> None:
    old_ca = P.create_ca(
        P.name(CN="old CA"),
        key=spare_key,
        not_before=NOW - dt.timedelta(days=100),
        not_after=NOW - dt.timedelta(days=1),
    )
    leaf = P.issue(old_ca, P.name(CN="leaf"), key=spare_key)
    assert "not trusted" in refused(TrustStore([old_ca.cert]), leaf)


@pytest.mark.parametrize(
    ("usage", "purpose"),
    [
        (P.ENCRYPTION_ONLY, Purpose.SIGNATURE),
        (None, Purpose.SIGNATURE),
        (P.Usage(digital_signature=False, content_commitment=True), Purpose.TLS_CLIENT),
    ],
    ids=["encryption-only", "no-key-usage", "non-repudiation-only-for-tls"],
)
def test_wrong_key_usage(test_pki, store, spare_key, usage, purpose) -> None:
    issued = P.issue(test_pki.ca, P.name(CN="wrong usage"), key=spare_key, usage=usage)
    assert "not trusted" in refused(store, issued, purpose)


def test_non_repudiation_alone_may_sign_a_vihf(test_pki, store, spare_key) -> None:
    issued = P.issue(
        test_pki.ca,
        P.name(CN="cachet"),
        key=spare_key,
        usage=P.Usage(digital_signature=False, content_commitment=True),
        extended_usage=[ExtendedKeyUsageOID.EMAIL_PROTECTION],  # as IGC-Santé signing certs
    )
    store.validate(issued.cert, [], Purpose.SIGNATURE, NOW)


def test_tls_client_needs_client_auth_when_eku_is_present(test_pki, store, spare_key) -> None:
    server_only = P.issue(
        test_pki.ca,
        P.name(CN="899900000011"),
        key=spare_key,
        usage=P.CARD,
        extended_usage=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    assert "not trusted" in refused(store, server_only, Purpose.TLS_CLIENT)


def test_a_ca_certificate_cannot_sign_a_vihf(test_pki, store) -> None:
    assert "not trusted" in refused(store, test_pki.ca)


def test_intermediate_ca_from_key_info(test_pki, spare_key) -> None:
    # Keys of the test PKI reused under other names (generating keys is slow).
    root = P.create_ca(
        P.name(CN="root allowing one intermediate"), key=test_pki.ca.key, path_length=1
    )
    intermediate = P.create_ca(P.name(CN="intermediate CA"), key=spare_key, issuer=root)
    leaf = P.issue(intermediate, P.name(CN="below the intermediate"), key=test_pki.server.key)
    store = TrustStore([root.cert])
    store.validate(leaf.cert, [intermediate.cert], Purpose.SIGNATURE, NOW)
    assert split_chain([intermediate.cert, leaf.cert]) == (leaf.cert, [intermediate.cert])
    with pytest.raises(SecurityFault):  # without its intermediate the leaf does not chain
        store.validate(leaf.cert, [], Purpose.SIGNATURE, NOW)
    # The test PKI's own CA allows no intermediate at all (pathlen 0).
    sub = P.create_ca(P.name(CN="sub"), key=spare_key, issuer=test_pki.ca)
    below = P.issue(sub, P.name(CN="too deep"), key=test_pki.server.key)
    with pytest.raises(SecurityFault, match="path length"):
        TrustStore([test_pki.ca.cert]).validate(below.cert, [sub.cert], Purpose.SIGNATURE, NOW)


def test_an_end_entity_cannot_act_as_a_ca(test_pki, spare_key) -> None:
    below = P.issue(test_pki.institution, P.name(CN="below an end entity"), key=spare_key)
    with pytest.raises(SecurityFault):
        TrustStore([test_pki.ca.cert]).validate(
            below.cert, [test_pki.institution.cert], Purpose.SIGNATURE, NOW
        )


def _crl_dir(tmp_path: Path, *crls) -> Path:
    folder = tmp_path / "crl"
    folder.mkdir()
    for n, crl in enumerate(crls):
        (folder / f"{n}.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return folder


def test_revoked_certificate_is_refused(test_pki, tmp_path, spare_key) -> None:
    victim = P.issue(test_pki.ca, P.name(CN="revoked"), key=spare_key)
    crls = CrlSet(_crl_dir(tmp_path, P.create_crl(test_pki.ca, [victim.cert.serial_number])))
    store = TrustStore([test_pki.ca.cert], crls)
    assert "revoked" in refused(store, victim)
    store.validate(test_pki.institution.cert, [], Purpose.SIGNATURE, NOW)


def test_der_crl_and_reload_when_the_folder_changes(test_pki, tmp_path, spare_key) -> None:
    victim = P.issue(test_pki.ca, P.name(CN="later revoked"), key=spare_key)
    folder = _crl_dir(tmp_path, P.create_crl(test_pki.ca))
    crls = CrlSet(folder, reload_s=0)
    store = TrustStore([test_pki.ca.cert], crls)
    store.validate(victim.cert, [], Purpose.SIGNATURE, NOW)  # cached as good
    der = P.create_crl(test_pki.ca, [victim.cert.serial_number]).public_bytes(
        serialization.Encoding.DER
    )
    (folder / "0.crl").write_bytes(der)
    assert "revoked" in refused(store, victim)  # the new CRL empties the cache


def test_expired_crl_fails_closed(test_pki, tmp_path) -> None:
    stale = P.create_crl(
        test_pki.ca,
        last_update=NOW - dt.timedelta(days=10),
        next_update=NOW - dt.timedelta(days=1),
    )
    store = TrustStore([test_pki.ca.cert], CrlSet(_crl_dir(tmp_path, stale)))
    assert "CRL" in refused(store, test_pki.institution)


def test_crl_not_signed_by_the_issuer_is_refused(test_pki, tmp_path, spare_key) -> None:
    rogue = P.create_ca(test_pki.ca.cert.subject, key=spare_key)
    store = TrustStore([test_pki.ca.cert], CrlSet(_crl_dir(tmp_path, P.create_crl(rogue))))
    assert "does not verify" in refused(store, test_pki.institution)


def test_validated_chains_are_cached_but_not_past_expiry(test_pki, spare_key) -> None:
    store = TrustStore([test_pki.ca.cert])
    short = P.issue(
        test_pki.ca,
        P.name(CN="short-lived"),
        key=spare_key,
        not_before=NOW - dt.timedelta(hours=1),
        not_after=NOW + dt.timedelta(seconds=30),
    )
    first = store.validate(short.cert, [], Purpose.SIGNATURE, NOW)
    assert store.validate(short.cert, [], Purpose.SIGNATURE, NOW) is first
    assert first.xmlsec_key is first.xmlsec_key  # one xmlsec key per validated chain
    assert "expired" in refused(store, short, now=NOW + dt.timedelta(seconds=31))


def _der(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_chains_as_received_are_cached_by_their_bytes(test_pki, spare_key, tmp_path) -> None:
    """validate_der (the VIHF's KeyInfo, as it came): the same verdicts as validate, in any
    order of the chain; a chain seen before is answered from the cache, until it expires or
    the CRLs change."""
    root = P.create_ca(P.name(CN="root for DER chains"), key=test_pki.ca.key, path_length=1)
    intermediate = P.create_ca(P.name(CN="DER intermediate"), key=spare_key, issuer=root)
    leaf = P.issue(
        intermediate,
        P.name(CN="DER leaf"),
        key=test_pki.server.key,
        not_before=NOW - dt.timedelta(hours=1),
        not_after=NOW + dt.timedelta(seconds=30),
    )
    folder = _crl_dir(tmp_path, P.create_crl(intermediate))
    store = TrustStore([root.cert], CrlSet(folder, reload_s=0))
    chain = [_der(intermediate.cert), _der(leaf.cert)]  # leaf second: split_chain finds it
    first = store.validate_der(chain, Purpose.SIGNATURE, NOW)
    assert first.leaf == leaf.cert
    assert store.validate_der(chain, Purpose.SIGNATURE, NOW) is first
    assert store.validate_der(chain[::-1], Purpose.SIGNATURE, NOW).leaf == leaf.cert
    # Cached per purpose: a verdict for signatures says nothing of TLS.
    assert store.validate_der(chain, Purpose.TLS_CLIENT, NOW) is not first
    with pytest.raises(SecurityFault, match="expired"):
        store.validate_der(chain, Purpose.SIGNATURE, NOW + dt.timedelta(seconds=31))
    with pytest.raises(SecurityFault):  # without its intermediate the leaf does not chain
        store.validate_der([_der(leaf.cert)], Purpose.SIGNATURE, NOW)
    with pytest.raises(SecurityFault, match="which KeyInfo certificate"):
        store.validate_der([_der(leaf.cert), _der(test_pki.institution.cert)], Purpose.SIGNATURE)
    with pytest.raises(SecurityFault):  # not a certificate at all
        store.validate_der([b"not DER"], Purpose.SIGNATURE, NOW)
    revoked = P.create_crl(intermediate, [leaf.cert.serial_number])
    (folder / "0.crl").write_bytes(revoked.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(SecurityFault, match="revoked"):  # the new CRL empties the cache
        store.validate_der(chain, Purpose.SIGNATURE, NOW)


def test_trust_store_folder_must_hold_certificates(tmp_path) -> None:
    with pytest.raises(ValueError, match="no PEM"):
        TrustStore.from_paths(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        TrustStore.from_paths(tmp_path / "missing")


def test_vihf_signed_by_a_rogue_ca_is_refused_end_to_end(test_pki, tmp_path, spare_key) -> None:
    rogue = P.create_ca(test_pki.ca.cert.subject, key=spare_key)
    forged = P.issue(rogue, test_pki.institution.cert.subject, key=spare_key)
    headers = VihfHeaders(
        test_pki.vihf_claims(new_patient_id()),
        SigningCredentials(forged.key_pem, (forged.cert_pem, rogue.cert_pem)),
    )
    data = serialize(envelope(headers()))
    with pytest.raises(SecurityFault) as caught:
        authenticator(test_pki).authenticate(soap_request(data, tmp_path), {})
    assert caught.value.check == "certificate"


def test_a_half_written_crl_keeps_the_previous_list(test_pki, tmp_path, spare_key) -> None:
    victim = P.issue(test_pki.ca, P.name(CN="revoked before"), key=spare_key)
    folder = _crl_dir(tmp_path, P.create_crl(test_pki.ca, [victim.cert.serial_number]))
    store = TrustStore([test_pki.ca.cert], CrlSet(folder, reload_s=0))
    (folder / "0.crl").write_bytes(b"-----BEGIN X509 CRL-----\nMIIB")  # being copied
    assert "revoked" in refused(store, victim)
    with pytest.raises(ValueError):  # at start-up an unreadable CRL is a configuration error
        CrlSet(folder)
