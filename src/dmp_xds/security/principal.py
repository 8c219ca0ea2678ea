"""Who is calling, as a verified VIHF says it: the :class:`Principal` every handler receives.

A Principal only exists once every security check has passed (signature or TLS certificate,
trust chain, validity, replay, homologation): handlers and policy functions may rely on each
field without re-checking. Values are kept as the VIHF wrote them (codes with their code
systems), plus a few derived views (profession, specialty, identifier kind) that the
habilitation rules need.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..metadata.datatypes import PatientId


class AuthenticationMode(StrEnum):
    """``Authentification_mode``: how the professional was authenticated."""

    DIRECTE = "DIRECTE"  # with a health professional card on the TLS connection
    INDIRECTE = "INDIRECTE"  # by the institution's software, which signs the VIHF
    INDIRECTE_RENFORCEE = "INDIRECTE_RENFORCEE"  # "AIR": indirect with strong local auth


class AccessMode(StrEnum):
    """The purpose of use (TRE_R248 ModeAcces, OID 1.2.250.1.213.1.1.4.248)."""

    NORMAL = "normal"
    BRIS_DE_GLACE = "bris_de_glace"  # break-glass
    CENTRE_15 = "centre_15"  # emergency call centre (régulation médicale)


# Access without the patient's authorisation: flagged loudly in the audit trail and the logs.
EMERGENCY_MODES = frozenset({AccessMode.BRIS_DE_GLACE, AccessMode.CENTRE_15})


ACCESS_MODE_SYSTEM = "1.2.250.1.213.1.1.4.248"
PROFESSION_SYSTEM = "1.2.250.1.71.1.2.7"  # TRE_G15 ProfessionSante
SPECIALTY_SYSTEM = "1.2.250.1.71.4.2.5"  # TRE_R01 EnsembleSavoirFaire (the second role)
# Professions whose VIHF must also carry a specialty (savoir-faire): médecin, pharmacien.
PROFESSIONS_WITH_SPECIALTY = frozenset({"10", "21"})
ROLE_CLASS_SYSTEM = "2.16.840.1.113883.5.110"  # HL7 RoleClass (PAT: the patient)
ROLE_CODE_SYSTEM = "2.16.840.1.113883.5.111"  # HL7 RoleCode (GUARD: a legal guardian)


class PatientRole(StrEnum):
    """A VIHF whose first role is one of these acts for the patient, not as a professional
    (only from a patient portal the server trusts: :mod:`.authenticate`)."""

    PATIENT = "PAT"  # the patient, in HL7 RoleClass
    LEGAL_REPRESENTATIVE = "GUARD"  # a legal representative, in HL7 RoleCode


_PATIENT_ROLES = {
    (PatientRole.PATIENT.value, ROLE_CLASS_SYSTEM): PatientRole.PATIENT,
    (PatientRole.LEGAL_REPRESENTATIVE.value, ROLE_CODE_SYSTEM): PatientRole.LEGAL_REPRESENTATIVE,
}

# IdNat type prefixes (first character of a national identifier).
_ID_KINDS = {
    "0": "ADELI",
    "1": "FINESS",
    "2": "SIREN",
    "3": "SIRET",
    "4": "RPPS-CABINET",
    "8": "RPPS",
}


@dataclass(frozen=True, slots=True)
class CodedValue:
    code: str
    system: str
    display: str | None = None


@dataclass(frozen=True, slots=True)
class Software:
    """The calling software (LPS) as it declares itself."""

    name: str
    version: str
    homologation: str  # LPS_ID_HOMOLOGATION_DMP
    installation_id: str | None = None  # LPS_ID


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """A verified certificate, as logs and policy may see it."""

    subject: str  # RFC 4514
    sha256: str  # hex fingerprint of the DER


@dataclass(frozen=True, slots=True)
class Principal:
    assertion_id: str
    # Subject/NameID: the professional's IdNat, or a structure-local id; for a patient, the
    # patient's own identifier, for a legal representative the portal's id of that person.
    name_id: str
    subject_name: str | None  # urn:oasis:names:tc:xspa:1.0:subject:subject-id
    roles: tuple[CodedValue, ...]  # profession first, then specialty / role codes
    structure_id: str  # Identifiant_Structure
    activity_sector: CodedValue  # Secteur_Activite
    authentication_mode: AuthenticationMode
    access_mode: AccessMode
    patient: PatientId  # urn:oasis:names:tc:xacml:2.0:resource:resource-id
    software: Software
    vihf_version: str
    issue_instant: dt.datetime
    expires: dt.datetime  # end of the accepted validity window
    confidentiality_codes: tuple[CodedValue, ...] = ()
    signer: CertificateIdentity | None = None  # who signed the assertion (if signed)
    tls_client: CertificateIdentity | None = None  # the TLS client certificate (direct mode)
    # Why the professional used an emergency mode, when the software says it (free text,
    # optional: security/vihf.py reads ``Mode_Acces_Raison`` or the PurposeOfUse's
    # originalText). Kept for the audit trail; only DMP_XDS_MOTIVE_REQUIRED (authenticate.py)
    # looks at whether it is there, no access rule reads it.
    access_motive: str | None = None

    @property
    def profession(self) -> CodedValue:
        return self.roles[0]

    @property
    def specialty(self) -> CodedValue | None:
        return self.roles[1] if len(self.roles) > 1 else None

    @property
    def patient_role(self) -> PatientRole | None:
        """The patient or a legal representative, when the first role says so."""
        return _PATIENT_ROLES.get((self.profession.code, self.profession.system))

    @property
    def emergency(self) -> bool:
        """Break-glass or régulation (centre 15): an access without authorisation."""
        return self.access_mode in EMERGENCY_MODES

    @property
    def id_kind(self) -> str:
        """What kind of identifier ``name_id`` is: RPPS, ADELI, ... or ``local``
        (``structure/internal-id``, used for automated processing)."""
        if "/" in self.name_id:
            return "local"
        return _ID_KINDS.get(self.name_id[:1], "unknown")

    @property
    def patient_hash(self) -> str:
        """A short hash of the patient, for logs (never the identifier itself)."""
        return hashlib.sha256(self.patient.canonical.encode()).hexdigest()[:16]

    def log_facts(self) -> dict[str, Any]:
        """What the request's log line says about the caller."""
        return {
            "principal": self.name_id,
            "profession": self.profession.code,
            "structure": self.structure_id,
            "auth_mode": self.authentication_mode.value,
            "access_mode": self.access_mode.value,
            "software": self.software.homologation,
            "patient_hash": self.patient_hash,
            **(
                {"emergency": True, "motive_given": self.access_motive is not None}
                if self.emergency
                else {}
            ),
        }
