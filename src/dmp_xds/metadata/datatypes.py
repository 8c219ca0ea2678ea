"""HL7 v2 data types as XDS uses them in slots and identifiers (ITI TF-3 Table 4.2.3.1.7-2).

Each parser returns ``None`` (or raises ``ValueError`` with a reason) for malformed input instead of
guessing, so that validation can name the exact problem.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

_OID = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))+$")
_DTM = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2})?)?)?)?)?$")
_SHA1 = re.compile(r"^[0-9a-fA-F]{40}$")
_UUID_URN = re.compile(
    r"^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_UNIQUE_ID = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))+(\^[A-Za-z0-9._-]{1,16})?$")


def is_oid(value: str) -> bool:
    """ISO OID in dotted form, at most 64 characters (the XDS limit)."""
    return len(value) <= 64 and bool(_OID.match(value))


def is_uuid_urn(value: str) -> bool:
    return bool(_UUID_URN.match(value))


def new_uuid_urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def is_unique_id(value: str) -> bool:
    """An XDS uniqueId: an OID (optionally ``^extension``), at most 128 characters.

    XDS also admits UUID URNs as uniqueIds; they are accepted too.
    """
    return len(value) <= 128 and bool(_UNIQUE_ID.match(value) or is_uuid_urn(value))


def is_sha1_hex(value: str) -> bool:
    return bool(_SHA1.match(value))


def is_dtm(value: str) -> bool:
    """HL7 DTM in UTC, precision from year to second, with valid calendar fields."""
    if not _DTM.match(value):
        return False
    parts = [value[0:4], value[4:6], value[6:8], value[8:10], value[10:12], value[12:14]]
    limits = [(0, 9999), (1, 12), (1, 31), (0, 23), (0, 59), (0, 59)]
    return all(not p or lo <= int(p) <= hi for p, (lo, hi) in zip(parts, limits, strict=True))


def dtm_key(value: str) -> str:
    """Pad a DTM to 14 digits so that lexical order is time order (missing fields are the
    earliest instant of the period: month and day 01, hour minute second 00)."""
    return (value + "0101000000"[len(value) - 4 :])[:14] if len(value) >= 4 else value


@dataclass(frozen=True, slots=True)
class PatientId:
    """A CX patient identifier ``id^^^&oid&ISO``; only CX.1 and the CX.4 universal id count.

    The DMP adds an identifier type and a date (``^NH^^20100907``); those components are
    kept in the submitted metadata but play no part in identity.
    """

    id: str
    authority: str

    @property
    def canonical(self) -> str:
        return f"{self.id}^^^&{self.authority}&ISO"

    def __str__(self) -> str:
        return self.canonical


def parse_patient_id(value: str) -> PatientId:
    """Parse a CX patient id; raise ValueError with a reason when it is not one."""
    comps = value.split("^")
    if len(comps) < 4 or not comps[0]:
        raise ValueError(f"patient id {value!r} is not a CX value 'id^^^&OID&ISO'")
    if comps[1] or comps[2]:
        raise ValueError(f"patient id {value!r}: CX.2 and CX.3 must be empty")
    hd = comps[3].split("&")
    if len(hd) != 3 or hd[0] or hd[2] != "ISO" or not is_oid(hd[1]):
        raise ValueError(
            f"patient id {value!r}: assigning authority must be '&OID&ISO', got {comps[3]!r}"
        )
    if any(c in comps[0] for c in "&~\\|"):
        raise ValueError(f"patient id {value!r}: CX.1 contains a reserved character")
    return PatientId(comps[0], hd[1])


def format_code(code: str, scheme: str) -> str:
    """A code as stored and queried: ``code^^scheme`` (ITI-18 coded parameter form)."""
    return f"{code}^^{scheme}"


_LANGUAGE = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
_MIME = re.compile(r"^[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*$")
_PID_FIELD = re.compile(r"^PID-\d{1,2}\|.+$")


def is_language_code(value: str) -> bool:
    """RFC 5646 language tag (``fr-FR``, ``art`` for artificial languages...)."""
    return bool(_LANGUAGE.match(value))


def is_mime_type(value: str) -> bool:
    return bool(_MIME.match(value))


def is_pid_field(value: str) -> bool:
    """One sourcePatientInfo value: ``PID-n|content``."""
    return bool(_PID_FIELD.match(value))


def _hd_problem(hd: str) -> str | None:
    parts = hd.split("&")
    if len(parts) != 3 or parts[2] != "ISO" or not is_oid(parts[1]):
        return f"assigning authority {hd!r} must be '&OID&ISO'"
    return None


def xcn_problem(value: str) -> str | None:
    """Why ``value`` is not an XCN person (id and/or family name; the id's assigning
    authority, component 9, must be an ISO OID), or None."""
    comps = value.split("^")
    if not comps[0] and (len(comps) < 2 or not comps[1]):
        return "a person needs an identifier (XCN.1) or a family name (XCN.2)"
    if comps[0] and len(comps) > 8 and comps[8]:
        return _hd_problem(comps[8])
    return None


def xon_problem(value: str) -> str | None:
    """Why ``value`` is not an XON organisation (name, and when an identifier is given in
    XON.10, an ISO OID authority in XON.6), or None."""
    comps = value.split("^")
    if not comps[0]:
        return "an organisation needs a name (XON.1)"
    if len(comps) > 5 and comps[5]:
        return _hd_problem(comps[5])
    return None


def xtn_problem(value: str) -> str | None:
    """Why ``value`` is not an XTN telecommunication address, or None."""
    comps = value.split("^")
    if len(comps) < 3 or comps[2] not in ("Internet", "PH", "FX", "CP", "BP", "X.400"):
        return "telecommunication needs a type (XTN.3: Internet, PH, FX, CP, BP, X.400)"
    if comps[2] == "Internet" and (len(comps) < 4 or "@" not in comps[3]):
        return "an Internet address needs an e-mail in XTN.4"
    return None
