"""Names of the DMP's own LPS services: SOAP actions, codes and OIDs, as the national DMP's
WSDLs and example messages spell them (one place, so handlers, WSDLs and tests agree).

Status and acknowledgement-detail codes marked "seen" appear in the national material
(example messages, the ANS test kit); the ones marked "ours" are not documented publicly and
were chosen in the same style.
"""

from __future__ import annotations

from ..errors import ErrorCode

# --- SOAP / WS-Addressing actions ----------------------------------------------------------
GDP_GET = "urn:hl7-org:v3:PRPA_IN201307UV02"  # TD0.2 existence test, TD1.3a consultation
GDP_GET_RESPONSE = "urn:hl7-org:v3:PRPA_IN201308UV02"
GDP_ADD = "urn:hl7-org:v3:PRPA_IN201311UV02"  # TD1.1 creation
GDP_ADD_RESPONSE = "urn:hl7-org:v3:PRPA_IN201311ResponseUV02"
GDP_REVISE = "urn:hl7-org:v3:PRPA_IN201314UV02"  # TD1.3b, TD1.4 closing, TD1.2 reactivation
GDP_REVISE_RESPONSE = "urn:hl7-org:v3:PRPA_IN201314ResponseUV02"

HAB_SET = "urn:si-dmp-habilitations:HabilitationsEndPoint:setAuthorization"  # TD0.3
HAB_SET_SOAP = "urn:hl7-org:v3:setAuthorization"  # the binding's soapAction
HAB_LIST = "urn:si-dmp-habilitations:HabilitationsEndPoint:listAuthorizationByPatient"  # TD1.6
HAB_LIST_SOAP = "urn:hl7-org:v3:listAuthorizationByPatient"

PATIENT_LIST = "urn:si-dmp-patients:PatientSpecificEndPoint:patientList"  # TD0.4

PDQ_FIND = "urn:hl7-org:v3:PRPA_IN201305UV02"  # TD0.5 (ITI-47)
PDQ_FIND_KIT = "urn:ihe:iti:pdqv3:2007:PDQSupplier_Service:findCandidatesQuery"  # ANS kit
PDQ_FIND_RESPONSE = "urn:hl7-org:v3:PRPA_IN201306UV02"

# --- namespaces ---------------------------------------------------------------------------
GDP_NS = "asip:ci-sis:gdp:2010"  # wrappers PRPA_IN2013xxUV02_Response
HAB_NS = "urn:si-dmp-habilitations"
PATIENTS_NS = "urn:si-dmp-patients"

# --- identifiers ---------------------------------------------------------------------------
DMP_OID = "1.2.250.1.213.4.1.1.1"  # the DMP as sender device and custodian
DMP_MESSAGE_ID_ROOT = "1.2.250.1.213.4.1.1.1.1"  # root of the DMP's message ids
INTERACTION_ROOT = "2.16.840.1.113883.1.6"
INS_C_OID = "1.2.250.1.213.1.4.2"  # legacy calculated INS, returned beside the INS
# INS-NIR, INS-NIA and their test domains: the identifiers a record is known by.
INS_OIDS = frozenset(
    {"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11"}
)
PS_ID_TYPE = "1.2.250.1.71.4.2.1"  # IdNat of a professional
STRUCTURE_ID_TYPE = "1.2.250.1.71.4.2.2"  # IdNat of a structure

# --- code systems ----------------------------------------------------------------------------
REASON_SYSTEM = "1.2.250.1.213.1.1.4.11"  # controlActProcess/reasonCode
OBSERVATION_SYSTEM = "1.2.250.1.213.4.1.2.3"  # administrativeObservation codes
CLOSING_REASON_SYSTEM = "1.2.250.1.213.4.1.2.4"
ACCOUNT_SYSTEM = "1.2.250.1.213.4.1.2.9"  # COMPTE_INTERNET_OUVERT
KEYWORD_SYSTEM = "1.2.250.1.213.4.1.2.6.1"  # attentionLine keyWordText
AUTHORISATION_VALUE_SYSTEM = "1.2.250.1.213.4.1.2.6.2"
MT_STATUS_SYSTEM = "1.2.250.1.213.4.1.2.6.3"
ACK_DETAIL_SYSTEM = "2.16.840.1.113883.5.1100"  # HL7 AcknowledgementDetailCode (SYNxxx)

# reasonCode values
TEST_EXISTENCE = "TEST_EXST"
CONSULTATION = "CNSLT_DATA"
CREATION = "CREA_RD"
MODIFICATION = "MODIF_DATA"
CLOSING = "FERM"
REACTIVATION = "REAC"
REASON_DISPLAY = {
    TEST_EXISTENCE: "Test d'existence de dossier",
    CONSULTATION: "Consultation des données de gestion de dossier",
    CREATION: "Création de dossier",
    MODIFICATION: "Modification des données de gestion du dossier",
    CLOSING: "Fermeture de dossier",
    REACTIVATION: "Réactivation de dossier",
}

# administrativeObservation codes
CONSENT_OPENING = "CONSENTEMENT_OUVERTURE_DMP"
CONSENT_REACTIVATION = "CONSENTEMENT_REACTIVATION_DMP"
OPPOSITION_BRIS_DE_GLACE = "OPPOSITION_BRIS_DE_GLACE"
OPPOSITION_ACCES_URGENCE = "OPPOSITION_ACCES_URGENCE"
INTERNET_ACCOUNT = "COMPTE_INTERNET_OUVERT"
ENS_ATTACHED = "RATTACHEMENT_ENS"
OPPOSITION_DISPLAY = {
    OPPOSITION_BRIS_DE_GLACE: "opposition au mode bris de glace",
    OPPOSITION_ACCES_URGENCE: "opposition à l'accès au mode urgence",
}
DEFAULT_CLOSING_REASON = "FERMETURE_DEMANDE_PATIENT"

# AUTORISATION values of the TD0.2 answer: VALIDE is seen; the others are the states an LPS
# must handle (authorisation missing, expired, forbidden), spelled like TD1.6's modes (ours).
AUTH_VALID = "VALIDE"
AUTH_NONE = "NON_EXISTE"
AUTH_FORBIDDEN = "INTERDITE"

# --- acknowledgement-detail / status codes ----------------------------------------------------
DMP_OK = "DMPOk"  # seen
DMP_FOUND = "DMPFound"  # seen: creation of an existing record, reactivation of an open one
DMP_CLOSED = ErrorCode.DMP_CLOSED.value  # seen: revising a closed record
DMP_NOT_FOUND = "DMPNotFound"  # ours: revising a record that does not exist
DMP_ACCESS_DENIED = ErrorCode.DMP_ACCESS_DENIED.value  # seen
DMP_CONSENT_MISSING = "DMPConsentMissing"  # ours: creation/reactivation without consent
DMP_INVALID_REQUEST = "DMPInvalidRequest"  # ours: a non-HL7 request that makes no sense
# Seen on the DMP's XDS side, reused here.
PATIENT_MISMATCH = ErrorCode.PATIENT_ID_DOES_NOT_MATCH.value
MISSING_ELEMENT = "SYN105"  # HL7: required element missing
WRONG_VALUE = "SYN102"  # HL7: data type / value error
