"""HL7 v3 ``TS`` values (CDA header times) against XDS ``DTM`` values (always UTC).

A CDA time carries the author's local offset (``20260115103000+0100``); XDS metadata times are
UTC (ITI TF-3 4.2.3.1.7; the DMP repeats it, EX_3.1-1070). Producers that copy the digits
across without converting are the classic mismatch, so the comparison converts first, then
compares at the precision both values have (XDS allows any precision from the year down).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

_TS = re.compile(
    r"\A(?P<digits>\d{4}(?:\d{2}){0,5})(?:\.\d{1,4})?(?P<offset>[+-](?P<oh>\d{2})(?P<om>\d{2}))?\Z"
)
_FORMATS = {4: "%Y", 6: "%Y%m", 8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}


def ts_to_utc(value: str) -> str:
    """The UTC digits of an HL7 TS, at the precision it was given; raise ValueError if malformed.

    Fractions of a second are dropped (XDS stops at the second). A date without a time of day is
    returned as is: shifting a whole day by an offset has no meaning. A time without an offset is
    taken as already UTC, the only reading under which it can match XDS at all.
    """
    match = _TS.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not an HL7 TS (YYYY[MM[DD[hh[mm[ss]]]]][.f][+/-zzzz])")
    digits = match["digits"]
    try:
        local = datetime.strptime(digits, _FORMATS[len(digits)])
    except ValueError:
        raise ValueError(f"{value!r} is not a valid date or time") from None
    if match["offset"] is None or len(digits) < 10:
        return digits
    hours, minutes = int(match["oh"]), int(match["om"])
    if hours > 14 or minutes > 59:
        raise ValueError(f"{value!r} has an impossible UTC offset")
    sign = -1 if match["offset"][0] == "-" else 1
    utc = local - sign * timedelta(hours=hours, minutes=minutes)
    return utc.strftime("%Y%m%d%H%M%S")[: len(digits)]


def same_instant(cda_ts: str, xds_dtm: str) -> bool:
    """Whether a CDA TS and an XDS DTM name the same time, at the precision both have."""
    utc = ts_to_utc(cda_ts)
    common = min(len(utc), len(xds_dtm))
    return utc[:common] == xds_dtm[:common]
