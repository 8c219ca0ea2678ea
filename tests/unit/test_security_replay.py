"""The replay cache in PostgreSQL: an assertion id is accepted once, by every worker."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import text

from dmp_xds.security.faults import FAILED_AUTHENTICATION, SecurityFault
from dmp_xds.security.replay import ReplayCache
from tests.fixtures.security import authenticator, soap_request, vihf_envelope


def _id() -> str:
    return f"_{uuid.uuid4()}"


def test_first_use_then_replay(engine) -> None:
    cache = ReplayCache(engine)
    now = dt.datetime.now(dt.UTC)
    assertion_id = _id()
    assert cache.first_use(assertion_id, now + dt.timedelta(minutes=5), now)
    assert not cache.first_use(assertion_id, now + dt.timedelta(minutes=5), now)
    # Another worker (its own cache object, same database) sees it too.
    assert not ReplayCache(engine).first_use(assertion_id, now + dt.timedelta(minutes=5), now)


def test_an_expired_row_protects_nothing_and_is_purged(engine) -> None:
    now = dt.datetime.now(dt.UTC)
    old = _id()
    cache = ReplayCache(engine, purge_every_s=0)
    assert cache.first_use(old, now - dt.timedelta(seconds=1), now - dt.timedelta(minutes=5))
    # Past its expiry the id may be taken again (the assertion itself is refused as expired).
    assert cache.first_use(old, now + dt.timedelta(minutes=5), now)
    stale = _id()
    assert cache.first_use(stale, now - dt.timedelta(seconds=1), now - dt.timedelta(minutes=5))
    cache.first_use(_id(), now + dt.timedelta(minutes=5), now)  # purges on the way
    with engine.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM vihf_replay WHERE assertion_id = :id"), {"id": stale}
        ).scalar_one()
    assert left == 0


def test_the_authenticator_refuses_a_replayed_assertion(test_pki, engine, tmp_path) -> None:
    auth = authenticator(test_pki)
    auth.replay = ReplayCache(engine)
    data = vihf_envelope(test_pki)
    auth.authenticate(soap_request(data, tmp_path), {})
    try:
        auth.authenticate(soap_request(data, tmp_path), {})
    except SecurityFault as fault:
        assert (fault.check, fault.subcode) == ("replay", FAILED_AUTHENTICATION)
    else:
        raise AssertionError("a replayed assertion was accepted")


def test_a_refused_assertion_does_not_consume_its_id(test_pki, engine, tmp_path) -> None:
    auth = authenticator(test_pki, homologated=("SOMETHING-ELSE",))
    auth.replay = ReplayCache(engine)
    data = vihf_envelope(test_pki)
    for _ in range(2):
        try:
            auth.authenticate(soap_request(data, tmp_path), {})
        except SecurityFault as fault:
            assert fault.check == "homologation"
