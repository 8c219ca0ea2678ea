"""Who the patient authorised on, or blocked from, a DMP record (TD0.3, TD1.6, TD0.4), and
the facts access policy reads from that.

Rules kept here because they are about the data, not about who asks:
- a blocked professional or structure stays blocked whatever it asks: it can neither
  authorise itself nor remove its own block ("un professionnel que le patient a bloqué ne
  peut pas accéder au DMP de ce patient, avec ou sans son autorisation");
- a record has at most one médecin traitant; designating another one moves the role;
- removing an authorisation deletes its row: the audit trail keeps the history.
Who may call which of these (MT only for blocking, médecins only for the MT role...) is
decided by the caller.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, Select, and_, bindparam, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from ..metadata.datatypes import parse_patient_id
from ..registry import tables as registry_tables
from ..registry.database import prepared
from . import vocabulary as dv
from .records import RecordError
from .tables import dmp_authorisation, dmp_record

AUTHORISED = "authorised"
BLOCKED = "blocked"
PROFESSIONAL = "professional"
STRUCTURE = "structure"

# TD1.6 list modes (Habilitations.wsdl modeType).
MODE_ALL = "TOUTE"
MODE_ACTIVE = "ACTIVE"
MODE_FORBIDDEN = "INTERDITE"


@dataclass(frozen=True)
class Actor:
    """A professional (IdNat PS) or a structure (IdNat structure) as an authorisation names it."""

    actor_type: str
    actor_id: str
    id_type: str
    first_name: str | None = None
    last_name: str | None = None
    specialities: tuple[str, ...] = ()  # "G15_10/SM26"
    speciality_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Authorisation:
    patient_key: int
    actor: Actor
    status: str
    medecin_traitant: bool
    started_at: dt.datetime
    last_action_at: dt.datetime
    last_action_by: str | None

    @property
    def mode(self) -> str:
        """The TD1.6 mode: ACTIVE (authorised) or INTERDITE (blocked)."""
        return MODE_ACTIVE if self.status == AUTHORISED else MODE_FORBIDDEN


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _authorisation(row: object) -> Authorisation:
    m = row._mapping  # type: ignore[attr-defined]
    return Authorisation(
        patient_key=m["patient_key"],
        actor=Actor(
            m["actor_type"],
            m["actor_id"],
            m["id_type"],
            m["first_name"],
            m["last_name"],
            tuple(m["specialities"]),
            tuple(m["speciality_labels"]),
        ),
        status=m["status"],
        medecin_traitant=m["medecin_traitant"],
        started_at=m["started_at"],
        last_action_at=m["last_action_at"],
        last_action_by=m["last_action_by"],
    )


def _key(patient_key: int, actor_type: str, actor_id: str) -> object:
    t = dmp_authorisation.c
    return and_(t.patient_key == patient_key, t.actor_type == actor_type, t.actor_id == actor_id)


def get_authorisation(
    conn: Connection, patient_key: int, actor_type: str, actor_id: str, *, for_update: bool = False
) -> Authorisation | None:
    query = select(dmp_authorisation).where(_key(patient_key, actor_type, actor_id))
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return _authorisation(row) if row is not None else None


def _upsert(
    conn: Connection, patient_key: int, actor: Actor, status: str, mt: bool, by: str | None
) -> None:
    now = _now()
    values = {
        "id_type": actor.id_type,
        "status": status,
        "medecin_traitant": mt,
        "first_name": actor.first_name,
        "last_name": actor.last_name,
        "specialities": list(actor.specialities),
        "speciality_labels": list(actor.speciality_labels),
        "last_action_at": now,
        "last_action_by": by,
    }
    statement = pg_insert(dmp_authorisation).values(
        patient_key=patient_key,
        actor_type=actor.actor_type,
        actor_id=actor.actor_id,
        started_at=now,
        **values,
    )
    # A new authorisation after a block starts anew; otherwise the start date stays.
    update = dict(values)
    if status == BLOCKED:
        update["started_at"] = now
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["patient_key", "actor_type", "actor_id"], set_=update
        )
    )


def authorise(
    conn: Connection,
    patient_key: int,
    actor: Actor,
    *,
    by: str | None,
    medecin_traitant: bool = False,
) -> bool:
    """Authorise ``actor`` (and make it the médecin traitant if asked); False when nothing
    changed (already authorised in that role). A blocked actor is refused."""
    current = get_authorisation(
        conn, patient_key, actor.actor_type, actor.actor_id, for_update=True
    )
    if current is not None and current.status == BLOCKED:
        raise RecordError(dv.DMP_ACCESS_DENIED, "the patient blocked this professional")
    if current is not None and (current.medecin_traitant or not medecin_traitant):
        return False
    if medecin_traitant:
        t = dmp_authorisation.c
        conn.execute(
            dmp_authorisation.update()
            .where(t.patient_key == patient_key, t.medecin_traitant)
            .values(medecin_traitant=False, last_action_at=_now(), last_action_by=by)
        )
    _upsert(conn, patient_key, actor, AUTHORISED, medecin_traitant, by)
    return True


def revoke(
    conn: Connection,
    patient_key: int,
    actor_type: str,
    actor_id: str,
    *,
    by: str | None,
    medecin_traitant_only: bool = False,
) -> bool:
    """Remove an authorisation, or only its médecin traitant role; False when there was
    nothing to remove. A block is not an authorisation: it is not removed here."""
    current = get_authorisation(conn, patient_key, actor_type, actor_id, for_update=True)
    if current is None:
        return False
    if current.status == BLOCKED:
        raise RecordError(dv.DMP_ACCESS_DENIED, "the patient blocked this professional")
    if medecin_traitant_only:
        if not current.medecin_traitant:
            return False
        conn.execute(
            dmp_authorisation.update()
            .where(_key(patient_key, actor_type, actor_id))
            .values(medecin_traitant=False, last_action_at=_now(), last_action_by=by)
        )
        return True
    conn.execute(dmp_authorisation.delete().where(_key(patient_key, actor_type, actor_id)))
    return True


def block(conn: Connection, patient_key: int, actor: Actor, *, by: str | None) -> bool:
    """Block ``actor`` on the record (replacing any authorisation and MT role); False when it
    was already blocked."""
    current = get_authorisation(
        conn, patient_key, actor.actor_type, actor.actor_id, for_update=True
    )
    if current is not None and current.status == BLOCKED:
        return False
    _upsert(conn, patient_key, actor, BLOCKED, False, by)
    return True


def unblock(
    conn: Connection, patient_key: int, actor_type: str, actor_id: str, *, by: str | None
) -> bool:
    """Lift a block (the actor is then neither authorised nor blocked); False if none."""
    del by  # the audit event of the call says who lifted it
    t = dmp_authorisation.c
    deleted = conn.execute(
        dmp_authorisation.delete().where(
            _key(patient_key, actor_type, actor_id), t.status == BLOCKED
        )
    )
    return deleted.rowcount > 0


def list_by_patient(
    conn: Connection, patient_key: int, mode: str = MODE_ALL
) -> list[Authorisation]:
    """The record's authorisations and blocks (TD1.6), oldest action first."""
    t = dmp_authorisation.c
    query = select(dmp_authorisation).where(t.patient_key == patient_key)
    if mode == MODE_ACTIVE:
        query = query.where(t.status == AUTHORISED)
    elif mode == MODE_FORBIDDEN:
        query = query.where(t.status == BLOCKED)
    return [_authorisation(r) for r in conn.execute(query.order_by(t.last_action_at, t.actor_id))]


def list_for_actor(
    conn: Connection, actor_type: str, actor_id: str, since: dt.datetime | None = None
) -> list[Authorisation]:
    """The records ``actor`` is authorised on (TD0.4), optionally acted on since ``since``."""
    t = dmp_authorisation.c
    query = select(dmp_authorisation).where(
        t.actor_type == actor_type, t.actor_id == actor_id, t.status == AUTHORISED
    )
    if since is not None:
        query = query.where(t.last_action_at >= since)
    return [_authorisation(r) for r in conn.execute(query.order_by(t.last_action_at))]


@dataclass(frozen=True)
class AccessFacts:
    """What access policy needs to know about a record and one caller (pure data).

    ``record_status``: ``open``, ``closed`` or None (no record). ``authorised``: the
    professional holds an authorisation; ``blocked``: the professional or the structure is
    blocked (a block wins over any authorisation); ``medecin_traitant``: the professional is
    the record's médecin traitant.
    """

    record_status: str | None
    patient_key: int | None = None
    authorised: bool = False
    blocked: bool = False
    medecin_traitant: bool = False
    opposition_bris_de_glace: bool = False
    opposition_acces_urgence: bool = False


def _facts_statement() -> Select:
    """Record and the caller's authorisations in one round trip (built once: every XDS call
    asks it)."""
    r, a, p = dmp_record.c, dmp_authorisation.c, registry_tables.patient.c
    callers = or_(
        and_(a.actor_type == PROFESSIONAL, a.actor_id == bindparam("professional")),
        and_(a.actor_type == STRUCTURE, a.actor_id == bindparam("structure")),
    )
    return (
        select(
            r.patient_key,
            r.status,
            r.opposition_bris_de_glace,
            r.opposition_acces_urgence,
            a.actor_type,
            a.status.label("authorisation"),
            a.medecin_traitant,
        )
        .select_from(
            registry_tables.patient.join(dmp_record, r.patient_key == p.patient_key).outerjoin(
                dmp_authorisation, and_(a.patient_key == r.patient_key, callers)
            )
        )
        .where(p.patient_id == bindparam("patient"))
    )


# Planned once per connection: its three-table join takes longer to plan than to run.
_FACTS = prepared("dmp_xds_access_facts", _facts_statement())


def access_facts(
    conn: Connection, patient_id: str, professional_id: str, structure_id: str | None = None
) -> AccessFacts:
    """The facts of ``patient_id``'s record for a caller (VIHF NameID and structure)."""
    rows = _FACTS.execute(
        conn,
        {
            "patient": parse_patient_id(patient_id).canonical,
            "professional": professional_id,
            "structure": structure_id or None,
        },
    ).all()
    if not rows:
        return AccessFacts(None)
    record = rows[0]
    own = next((row for row in rows if row.actor_type == PROFESSIONAL), None)
    return AccessFacts(
        record_status=record.status,
        patient_key=record.patient_key,
        authorised=own is not None and own.authorisation == AUTHORISED,
        blocked=any(row.authorisation == BLOCKED for row in rows),
        medecin_traitant=own is not None and bool(own.medecin_traitant),
        opposition_bris_de_glace=bool(record.opposition_bris_de_glace),
        opposition_acces_urgence=bool(record.opposition_acces_urgence),
    )
