"""Settings read from the environment: booleans (``DMP_XDS_DB_PREPARE``)."""

from __future__ import annotations

import pytest

from dmp_xds.config import Settings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, True), ("", True), ("false", False), ("0", False), ("No", False), ("on", True)],
)
def test_db_prepare(monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: bool) -> None:
    if raw is None:
        monkeypatch.delenv("DMP_XDS_DB_PREPARE", raising=False)
    else:
        monkeypatch.setenv("DMP_XDS_DB_PREPARE", raw)
    assert Settings.from_env().db_prepare is expected


def test_db_prepare_must_be_a_boolean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMP_XDS_DB_PREPARE", "sometimes")
    with pytest.raises(ValueError, match="DMP_XDS_DB_PREPARE must be true or false"):
        Settings.from_env()
