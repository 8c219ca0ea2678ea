"""From what the request and the registry hold to the facts :mod:`.access` decides on.

Kept apart from the rules so that the rules stay pure and table-tested, and so that the one
place that interprets the VIHF's codes and the metadata's identifiers is easy to find.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..security.principal import (
    PROFESSION_SYSTEM,
    SPECIALTY_SYSTEM,
    AccessMode,
    AuthenticationMode,
    PatientRole,
    Principal,
)
from .access import DMP_CONFIDENTIALITY_SYSTEM, MEDECIN, Actor, Document, Kind, Mode

MEDECINE_DU_TRAVAIL = "SM25"  # TRE_R01 "Médecine du travail (SM)"
INS_OIDS_PREFIX = "1.2.250.1.213.1.4."  # INS-NIR, INS-NIA and their test domains

_MODES = {
    AccessMode.NORMAL: Mode.NORMAL,
    AccessMode.BRIS_DE_GLACE: Mode.BRIS_DE_GLACE,
    AccessMode.CENTRE_15: Mode.CENTRE_15,
}


def actor_of(principal: Principal, *, medecin_traitant: str | None = None) -> Actor:
    """The matrix actor of a verified VIHF.

    A VIHF whose first role is the patient (HL7 ``PAT``) or a legal representative
    (``GUARD``) acts for the patient: security/authenticate.py accepted it from a trusted
    patient portal only, naming the patient themself for ``PAT``. Otherwise, plain indirect
    mode acts as the institution's certificate (the matrix's "certificat ES" columns). Direct
    mode and reinforced indirect mode (AIR, PDT-INF-606: the establishment vouches for a
    strong local authentication of the named professional) act as the professional: a
    physician whose specialty (the VIHF's second role, TRE_R01) is occupational medicine is
    the médecin du travail, who has a column of its own; another physician is the médecin
    traitant when the record designates that very professional; a holder of a health
    profession (TRE_G15) is a PS, anyone else (a CPE card) is establishment staff.
    """
    mode = _MODES[principal.access_mode]
    specialty = principal.specialty
    role = principal.patient_role
    if role is PatientRole.PATIENT:
        kind = Kind.PATIENT
    elif role is PatientRole.LEGAL_REPRESENTATIVE:
        kind = Kind.REPRESENTANT_LEGAL
    elif principal.authentication_mode is AuthenticationMode.INDIRECTE:
        kind = Kind.ETABLISSEMENT
    elif principal.profession.system != PROFESSION_SYSTEM:
        kind = Kind.CPE
    elif principal.profession.code == MEDECIN:
        if specialty is not None and (specialty.code, specialty.system) == (
            MEDECINE_DU_TRAVAIL,
            SPECIALTY_SYSTEM,
        ):
            kind = Kind.MEDECIN_TRAVAIL
        elif principal.name_id == medecin_traitant:
            kind = Kind.MEDECIN_TRAITANT
        else:
            kind = Kind.MEDECIN
    else:
        kind = Kind.PS
    return Actor(kind, mode, principal.name_id, principal.structure_id, principal.profession.code)


def person_id(xcn: str) -> str:
    """XCN.1, the person's identifier."""
    return xcn.split("^", 1)[0]


def organisation_id(xon: str) -> str:
    """XON.10, the organisation's identifier (empty when absent)."""
    parts = xon.split("^")
    return parts[9] if len(parts) > 9 else ""


def is_patient(xcn: str) -> bool:
    """An author identified in an INS domain is the patient (patient-contributed document)."""
    parts = xcn.split("^")
    authority = parts[8] if len(parts) > 8 else ""
    oid = authority.split("&")[1] if authority.count("&") == 2 else ""
    return oid.startswith(INS_OIDS_PREFIX)


def confidentiality_of(codes: Iterable[str]) -> frozenset[str]:
    """Confidentiality codes (``code^^scheme``) as policy compares them: a code of the DMP's
    restriction system (J58 / TRE_A07) bare, so that it is the MASQUE_PS or
    INVISIBLE_PATIENT the rules name; any other kept whole, so that the same letters in
    another code system never count as one."""
    found = set()
    for key in codes:
        code, _, scheme = key.partition("^^")
        found.add(code if scheme == DMP_CONFIDENTIALITY_SYSTEM else f"{code}^^{scheme}")
    return frozenset(found)


def document_of(
    status: str,
    confidentiality: Iterable[str],
    author_persons: Iterable[str],
    author_institutions: Iterable[str] = (),
    type_code: str = "",
) -> Document:
    """Document facts from stored metadata (codes as ``code^^scheme``, authors as XCN/XON)."""
    persons = list(author_persons)
    return Document(
        status=status,
        confidentiality=confidentiality_of(confidentiality),
        author_ids=frozenset(filter(None, (person_id(p) for p in persons))),
        author_structures=frozenset(
            filter(None, (organisation_id(o) for o in author_institutions))
        ),
        authored_by_patient=any(is_patient(p) for p in persons),
        type_code=type_code,
    )
