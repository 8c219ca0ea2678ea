"""The DMP record ("dossier") of a patient: create with consent, read, revise, close, reactivate,
find by identity traits. Functions on a Connection; the caller owns the transaction (and
records its audit event in it).

Why a record is distinct from the registry's ``patient`` row: the XDS side only needs to know
that a patient id exists, while the DMP's services need the record's life (open, closed and
why, reactivated), the consent it was opened with, the patient's oppositions and the identity
traits its answers carry. Creating a record registers the patient id, so XDS submissions for
that patient are accepted from then on.

Errors are :class:`RecordError` with the DMP's status code (``DMPFound``, ``DMPClosed``...):
the service layer turns them into HL7v3 acknowledgements.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from ..metadata.datatypes import parse_patient_id
from ..registry import tables as registry_tables
from ..registry.register import create_patient
from . import vocabulary as dv
from .tables import dmp_record

OPEN = "open"
CLOSED = "closed"


class RecordError(Exception):
    """A request the record's state refuses; ``code`` is the DMP's acknowledgement detail."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Identity:
    """The administrative data a record keeps (TD1.3a answers with it, TD1.3b changes it).

    Telecoms, addresses, legal representatives and birth place are kept in the structure the
    HL7v3 message gave them (see ``hl7v3.element_json``): the DMP gives them back as received,
    and nothing here interprets them beyond a patient search's postal code and city.
    """

    prefix: str | None = None
    given: str | None = None
    family: str | None = None  # usage name (qualifier SP), or the only family name
    birth_name: str | None = None  # qualifier BR
    gender: str | None = None  # administrativeGenderCode: M, F, U
    birth_date: str | None = None  # HL7 TS as sent (YYYYMMDD)
    deceased: bool | None = None
    telecoms: list[dict[str, Any]] | None = None
    addresses: list[dict[str, Any]] | None = None
    relationships: list[dict[str, Any]] | None = None
    birth_place: dict[str, Any] | None = None


@dataclass
class Oppositions:
    """The patient's refusals of emergency access (HL7 administrativeObservation)."""

    bris_de_glace: bool | None = None
    acces_urgence: bool | None = None


@dataclass
class Record:
    patient_key: int
    patient_id: str  # canonical CX
    status: str
    created_at: dt.datetime
    consent_at: dt.datetime
    updated_at: dt.datetime
    closed_at: dt.datetime | None
    closing_reason: str | None
    identity: Identity
    oppositions: Oppositions
    other_ids: list[dict[str, str]] = field(default_factory=list)  # {"root", "extension"}
    internet_account: bool = False
    ens_attached: bool = False

    @property
    def is_open(self) -> bool:
        return self.status == OPEN


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_COLUMNS = {
    "prefix": "name_prefix",
    "given": "given_name",
    "family": "family_name",
    "birth_name": "birth_name",
    "gender": "gender",
    "birth_date": "birth_date",
    "deceased": "deceased",
    "telecoms": "telecoms",
    "addresses": "addresses",
    "relationships": "relationships",
    "birth_place": "birth_place",
}


def _identity_values(identity: Identity) -> dict[str, Any]:
    """Columns for the fields the message carried (None means "not said": left unchanged)."""
    return {
        column: getattr(identity, name)
        for name, column in _COLUMNS.items()
        if getattr(identity, name) is not None
    }


def _opposition_values(oppositions: Oppositions) -> dict[str, bool]:
    values = {}
    if oppositions.bris_de_glace is not None:
        values["opposition_bris_de_glace"] = oppositions.bris_de_glace
    if oppositions.acces_urgence is not None:
        values["opposition_acces_urgence"] = oppositions.acces_urgence
    return values


def _record(row: Any) -> Record:
    m = row._mapping
    return Record(
        patient_key=m["patient_key"],
        patient_id=m["patient_id"],
        status=m["status"],
        created_at=m["created_at"],
        consent_at=m["consent_at"],
        updated_at=m["updated_at"],
        closed_at=m["closed_at"],
        closing_reason=m["closing_reason"],
        identity=Identity(
            **{name: m[column] for name, column in _COLUMNS.items()},
        ),
        oppositions=Oppositions(m["opposition_bris_de_glace"], m["opposition_acces_urgence"]),
        other_ids=list(m["other_ids"] or []),
        internet_account=m["internet_account"],
        ens_attached=m["ens_attached"],
    )


def _select() -> Any:
    p = registry_tables.patient
    return select(dmp_record, p.c.patient_id).join(p, p.c.patient_key == dmp_record.c.patient_key)


def get_record(conn: Connection, patient_id: str, *, for_update: bool = False) -> Record | None:
    """The record of ``patient_id`` (any CX form), or None when the patient has none.
    ``for_update`` locks the row so that concurrent revisions of one record serialise."""
    canonical = parse_patient_id(patient_id).canonical
    query = _select().where(registry_tables.patient.c.patient_id == canonical)
    if for_update:
        query = query.with_for_update(of=dmp_record)
    row = conn.execute(query).first()
    return _record(row) if row is not None else None


def records_by_keys(conn: Connection, keys: list[int]) -> dict[int, Record]:
    """Records by patient key (the patient list of a professional)."""
    if not keys:
        return {}
    rows = conn.execute(_select().where(dmp_record.c.patient_key.in_(keys)))
    return {r.patient_key: r for r in map(_record, rows)}


def record_status(conn: Connection, patient_id: str) -> str | None:
    """``open``, ``closed`` or None (no record): what access policy needs to know."""
    canonical = parse_patient_id(patient_id).canonical
    p = registry_tables.patient
    return conn.execute(
        select(dmp_record.c.status)
        .join(p, p.c.patient_key == dmp_record.c.patient_key)
        .where(p.c.patient_id == canonical)
    ).scalar_one_or_none()


def create_record(
    conn: Connection,
    patient_id: str,
    identity: Identity,
    oppositions: Oppositions,
    *,
    consent: bool,
    by: str | None,
    other_ids: list[dict[str, str]] | None = None,
) -> Record:
    """Open the record of ``patient_id`` (TD1.1). The patient's consent is required; a patient
    who already has a record (open: ``DMPFound``, closed: ``DMPClosed``, to be reactivated)
    gets no second one."""
    if not consent:
        raise RecordError(
            dv.DMP_CONSENT_MISSING,
            f"the patient's consent ({dv.CONSENT_OPENING} = true) is required to open a record",
        )
    key, _ = create_patient(conn, patient_id)
    now = _now()
    key_back = conn.execute(
        pg_insert(dmp_record)
        .values(
            patient_key=key,
            status=OPEN,
            created_at=now,
            created_by=by,
            consent_at=now,
            updated_at=now,
            other_ids=other_ids or [],
            telecoms=identity.telecoms or [],
            addresses=identity.addresses or [],
            relationships=identity.relationships or [],
            opposition_bris_de_glace=bool(oppositions.bris_de_glace),
            opposition_acces_urgence=bool(oppositions.acces_urgence),
            internet_account=False,
            ens_attached=False,
            **{
                k: v
                for k, v in _identity_values(identity).items()
                if k not in ("telecoms", "addresses", "relationships")
            },
        )
        .on_conflict_do_nothing(index_elements=["patient_key"])
        .returning(dmp_record.c.patient_key)
    ).scalar_one_or_none()
    if key_back is None:
        existing = get_record(conn, patient_id)
        if existing is not None and not existing.is_open:
            raise RecordError(dv.DMP_CLOSED, "the patient's record exists and is closed")
        raise RecordError(dv.DMP_FOUND, "the patient already has a record")
    record = get_record(conn, patient_id)
    assert record is not None
    return record


def _locked_open(conn: Connection, patient_id: str) -> Record:
    record = get_record(conn, patient_id, for_update=True)
    if record is None:
        raise RecordError(dv.DMP_NOT_FOUND, "the patient has no record")
    if not record.is_open:
        raise RecordError(dv.DMP_CLOSED, "the patient's record is closed")
    return record


def revise_record(
    conn: Connection, patient_id: str, identity: Identity, oppositions: Oppositions
) -> Record:
    """Change the administrative data and oppositions of an open record (TD1.3b); fields the
    message did not carry keep their value."""
    record = _locked_open(conn, patient_id)
    conn.execute(
        dmp_record.update()
        .where(dmp_record.c.patient_key == record.patient_key)
        .values(updated_at=_now(), **_identity_values(identity), **_opposition_values(oppositions))
    )
    revised = get_record(conn, patient_id)
    assert revised is not None
    return revised


def close_record(conn: Connection, patient_id: str, reason: str, by: str | None) -> Record:
    """Close an open record (TD1.4). Its documents stay; closing only ends the record's use."""
    record = _locked_open(conn, patient_id)
    now = _now()
    conn.execute(
        dmp_record.update()
        .where(dmp_record.c.patient_key == record.patient_key)
        .values(status=CLOSED, closed_at=now, closing_reason=reason, closed_by=by, updated_at=now)
    )
    closed = get_record(conn, patient_id)
    assert closed is not None
    return closed


def reactivate_record(conn: Connection, patient_id: str, *, consent: bool) -> Record:
    """Reopen a closed record (TD1.2), with the patient's consent to reactivation."""
    record = get_record(conn, patient_id, for_update=True)
    if record is None:
        raise RecordError(dv.DMP_NOT_FOUND, "the patient has no record")
    if record.is_open:
        raise RecordError(dv.DMP_FOUND, "the patient's record is already open")
    if not consent:
        raise RecordError(
            dv.DMP_CONSENT_MISSING,
            f"the patient's consent ({dv.CONSENT_REACTIVATION} = true) is required",
        )
    now = _now()
    conn.execute(
        dmp_record.update()
        .where(dmp_record.c.patient_key == record.patient_key)
        .values(
            status=OPEN,
            closed_at=None,
            closing_reason=None,
            closed_by=None,
            reactivated_at=now,
            consent_at=now,
            updated_at=now,
        )
    )
    reopened = get_record(conn, patient_id)
    assert reopened is not None
    return reopened


@dataclass(frozen=True)
class Traits:
    """What a patient search (TD0.5, PDQv3) may ask for; at least a name or a birth date."""

    family: str | None = None
    given: str | None = None
    birth_date: str | None = None
    gender: str | None = None
    postal_code: str | None = None
    city: str | None = None

    @property
    def selective(self) -> bool:
        return bool(self.family or self.birth_date)


def search_records(conn: Connection, traits: Traits, limit: int) -> list[Record]:
    """Records whose traits match (names case-insensitively, the family name as usage or
    birth name); at most ``limit`` + 1 so that the caller can tell there are more."""
    query = _select()
    if traits.family:
        family = traits.family.lower()
        query = query.where(
            or_(
                func.lower(dmp_record.c.family_name) == family,
                func.lower(dmp_record.c.birth_name) == family,
            )
        )
    if traits.given:
        query = query.where(func.lower(dmp_record.c.given_name) == traits.given.lower())
    if traits.birth_date:
        query = query.where(dmp_record.c.birth_date == traits.birth_date)
    if traits.gender:
        query = query.where(dmp_record.c.gender == traits.gender)
    # Address traits are filtered here: addresses are kept as the messages gave them.
    found = [
        r
        for r in map(_record, conn.execute(query.order_by(dmp_record.c.patient_key).limit(1000)))
        if _address_matches(r.identity, traits)
    ]
    return found[: limit + 1]


def _address_matches(identity: Identity, traits: Traits) -> bool:
    if not traits.postal_code and not traits.city:
        return True
    for address in identity.addresses or []:
        parts = {c.get("tag"): (c.get("text") or "") for c in address.get("children", [])}
        if traits.postal_code and parts.get("postalCode", "") != traits.postal_code:
            continue
        if traits.city and parts.get("city", "").lower() != traits.city.lower():
            continue
        return True
    return False
