"""What one VIHF verification costs, step by step, in-process (no HTTP): the hardened parse,
the structural checks (wrapping, profile, attributes), chain validation cold and cached, the
xmlsec signature check, the replay-cache insert in PostgreSQL, and the whole
``Authenticator.authenticate`` as the server runs it once per request.

    python -m benchmarks vihf_verify [--n 2000] [--no-db]

``--no-db`` skips the replay row (no PostgreSQL is started); the end-to-end row then excludes
it too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from dmp_xds.client.transport import SoapClient
from dmp_xds.client.xds import adhoc_query_request
from dmp_xds.metadata import vocabulary as v
from dmp_xds.security.authenticate import Authenticator, SecurityPolicy
from dmp_xds.security.pki import init_test_pki
from dmp_xds.security.replay import ReplayCache
from dmp_xds.security.signature import AlgorithmPolicy, check_structure, locate, verify
from dmp_xds.security.trust import Purpose, TrustStore, load_certificate, split_chain
from dmp_xds.security.vihf import read_vihf
from dmp_xds.soap.xmlparser import parse_xml, serialize

from .harness import report

PATIENT = "1234567890123^^^&1.2.250.1.213.1.4.10&ISO"


def timed(n: int, step: Callable[[], object]) -> dict[str, float]:
    step()  # warm-up
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        step()
        samples.append(time.perf_counter() - started)
    ordered = sorted(samples)
    return {
        "n": n,
        "median_us": statistics.median(ordered) * 1e6,
        "p95_us": ordered[min(n - 1, int(0.95 * n))] * 1e6,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks vihf_verify")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--no-db", action="store_true", help="skip the replay-cache row")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="dmp-xds-bench-vihf-"))
    embedded = None
    try:
        pki = init_test_pki(root / "pki")
        headers = pki.vihf_headers(PATIENT)
        soap = SoapClient("http://bench.invalid")
        payload = adhoc_query_request(v.FIND_DOCUMENTS, {"$XDSDocumentEntryPatientId": PATIENT})

        def envelope_bytes() -> bytes:
            return serialize(
                soap.envelope("/xds/registry", v.ACTION_STORED_QUERY, payload, headers())
            )

        data = envelope_bytes()
        algorithms = AlgorithmPolicy.from_names(["rsa-sha256", "rsa-sha1"])
        policy = SecurityPolicy(
            algorithms=algorithms,
            homologated=frozenset({pki.homologation}),
            clock_skew=dt.timedelta(seconds=300),
            max_assertion_age=dt.timedelta(seconds=300),
        )
        store = TrustStore.from_paths(pki.trust_dir, pki.crl_dir)
        envelope = parse_xml(data)
        header = envelope[0]
        located = locate(envelope, header)
        assert located.signature is not None
        facts = check_structure(located.signature, located.assertion_id, algorithms)
        leaf, intermediates = split_chain([load_certificate(d, "cert") for d in facts.certificates])
        validated = store.validate(leaf, intermediates, Purpose.SIGNATURE)

        def structure() -> None:
            found = locate(envelope, header)
            assert found.signature is not None
            check_structure(found.signature, found.assertion_id, algorithms)
            read_vihf(found.assertion)

        def chain_cold() -> None:
            TrustStore(store.anchors, store.crls).validate(leaf, intermediates, Purpose.SIGNATURE)

        def xmlsec_verify() -> None:
            # A fresh parse each time: xmlsec works on the tree, as in a request.
            tree = parse_xml(data)
            found = locate(tree, tree[0])
            assert found.signature is not None
            verify(found.signature, found.assertion, validated.xmlsec_key, algorithms)

        parse_cost = timed(args.n, lambda: parse_xml(data))
        rows: list[dict[str, object]] = [
            {"step": "parse (hardened lxml)", **parse_cost},
            {"step": "structural checks + attributes", **timed(args.n, structure)},
            {"step": "chain validation, cold", **timed(args.n, chain_cold)},
            {
                "step": "chain validation, cached",
                **timed(args.n, lambda: store.validate(leaf, intermediates, Purpose.SIGNATURE)),
            },
        ]
        xmlsec_row = timed(args.n, xmlsec_verify)
        xmlsec_row["median_us"] -= parse_cost["median_us"]  # parse counted on its own row
        xmlsec_row["p95_us"] -= parse_cost["p95_us"]
        rows.append({"step": "xmlsec verify (cached key; parse excluded)", **xmlsec_row})

        replay = None
        if not args.no_db:
            from dmp_xds.registry.database import EmbeddedPostgres, make_engine, migrate

            url = os.environ.get("DMP_XDS_DATABASE_URL")
            if not url:
                embedded = EmbeddedPostgres(root / "pg")
                url = embedded.start()
            migrate(url)
            replay = ReplayCache(make_engine(url, pool_size=1))
            expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
            rows.append(
                {
                    "step": "replay insert (PostgreSQL)",
                    **timed(
                        args.n,
                        lambda: replay.first_use(
                            f"_{uuid.uuid4()}", expires, dt.datetime.now(dt.UTC)
                        ),
                    ),
                }
            )

        # End to end as the server runs it: parse + authenticate, with a fresh envelope per
        # call when the replay cache is on (a second use would be refused).
        from dmp_xds.soap.envelope import Limits, read_soap_request

        authenticator = Authenticator(store, replay, policy)
        limits = Limits(10**7, 10**7, 10)
        bodies = [envelope_bytes() for _ in range(args.n + 1)] if replay else [data]
        spool = root / "spool"
        spool.mkdir()

        def end_to_end() -> None:
            import io

            body = bodies.pop() if replay else data
            environ = {
                "REQUEST_METHOD": "POST",
                "CONTENT_TYPE": "application/soap+xml; charset=utf-8",
                "CONTENT_LENGTH": str(len(body)),
                "wsgi.input": io.BytesIO(body),
            }
            authenticator.authenticate(read_soap_request(environ, spool, limits), {})

        label = "end to end: read + authenticate" + (" + replay" if replay else " (no replay)")
        rows.append({"step": label, **timed(args.n, end_to_end)})
        rows.append({"step": "client: build + sign one VIHF", **timed(min(args.n, 500), headers)})
        print(f"envelope: {len(data)} bytes, RSA-2048, RSA-SHA256\n")
        report("vihf_verify", rows)
        return 0
    finally:
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(root, ignore_errors=True)
