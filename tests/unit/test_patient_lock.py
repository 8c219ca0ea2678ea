"""The per-patient advisory lock's key folding (registry/patient_lock.py)."""

from __future__ import annotations

import pytest

from dmp_xds.registry.patient_lock import _object_id

INT4 = range(-(2**31), 2**31)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (0, 0),
        (1, 1),
        (2**31 - 1, 2**31 - 1),
        (2**31, -(2**31)),  # past int4: wraps, never overflows the lock function's argument
        (2**32 - 1, -1),
        (2**32 + 5, 5),  # equal modulo 2**32: the same lock (a removal may wait needlessly)
        (2**62 + 7, 7),
    ],
)
def test_patient_keys_fold_into_int4(key: int, expected: int) -> None:
    assert _object_id(key) == expected
    assert _object_id(key) in INT4
