"""The test PKI on disk and the ``dmp-xds pki`` commands."""

from __future__ import annotations

import stat

from lxml import etree

from dmp_xds.cli import build_parser
from dmp_xds.config import Settings
from dmp_xds.namespaces import SAML2, WSSE
from dmp_xds.security.commands import with_test_pki
from dmp_xds.security.pki import PROFESSIONALS, load_test_pki
from dmp_xds.security.trust import Purpose, TrustStore


def main(argv: list[str]) -> int:
    """Run a ``dmp-xds`` command in-process (without ``cli.main``'s logging set-up)."""
    args = build_parser().parse_args(argv)
    return int(args.func(Settings(), args))


def test_pki_init_writes_a_usable_pki(tmp_path, capsys) -> None:
    folder = tmp_path / "pki"
    assert main(["pki", "init", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "DMP_XDS_TRUST_STORE" in out and "serve --pki" in out
    pki = load_test_pki(folder)
    assert stat.S_IMODE((folder / "ca.key").stat().st_mode) == 0o600
    store = TrustStore.from_paths(pki.trust_dir, pki.crl_dir)
    store.validate(pki.institution.cert, [], Purpose.SIGNATURE)
    subjects = {issued.cert.subject.rfc4514_string() for issued in pki.professionals.values()}
    assert len(subjects) == len(PROFESSIONALS)  # each with its IdNat as CN
    for handle in pki.professionals:
        store.validate(pki.professionals[handle].cert, [], Purpose.TLS_CLIENT)
    assert "localhost" in pki.server.cert.subject.rfc4514_string()

    assert main(["pki", "vihf", str(folder), "--patient", "1234567890123^^^&1.2.3&ISO"]) == 0
    header = etree.fromstring(capsys.readouterr().out.encode())
    assert header.tag == f"{{{WSSE}}}Security"
    assert header.find(f"{{{SAML2}}}Assertion") is not None


def test_serve_pki_option_fills_only_what_is_unset(test_pki) -> None:
    pointed = with_test_pki(Settings(), test_pki.directory)
    assert pointed.trust_store == test_pki.trust_dir
    assert pointed.crl_path == test_pki.crl_dir
    assert pointed.homologated_software == (test_pki.homologation,)
    mine = Settings(homologated_software=("MINE",))
    assert with_test_pki(mine, test_pki.directory).homologated_software == ("MINE",)
    assert with_test_pki(mine, None) is mine


def test_security_configuration_is_checked_before_serving(test_pki, tmp_path) -> None:
    from dmp_xds.security.commands import configuration_error

    good = with_test_pki(Settings(), test_pki.directory)
    assert configuration_error(good) is None
    assert "rsa-md5" in (configuration_error(Settings(signature_algorithms=("rsa-md5",))) or "")
    assert "not a folder" in (configuration_error(Settings(trust_store=tmp_path / "no")) or "")
    assert "go together" in (configuration_error(Settings(tls_cert=tmp_path / "c.pem")) or "")
    assert "trusted proxy" in (configuration_error(Settings(trusted_proxies=("proxy",))) or "")
