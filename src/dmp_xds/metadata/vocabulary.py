"""The fixed identifiers of XDS metadata (ITI TF-3 4.2): classification schemes, identification
schemes, object types, association types, statuses and stored query ids.

They are protocol constants, not configuration: one table each, looked up by name.
"""

from __future__ import annotations

from typing import Final

# --- object types ------------------------------------------------------------------------------
STABLE_DOCUMENT: Final = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
ON_DEMAND_DOCUMENT: Final = "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248"
DOCUMENT_ENTRY_TYPES: Final = frozenset({STABLE_DOCUMENT, ON_DEMAND_DOCUMENT})
SUBMISSION_SET_NODE: Final = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
FOLDER_NODE: Final = "urn:uuid:d9d542f3-6cc4-48b6-8870-ea235fbc94c2"
LIMITED_METADATA_DE: Final = "urn:uuid:ab9b591b-83ab-4d03-8f5d-f93b1fb92e85"
LIMITED_METADATA_SS: Final = "urn:uuid:5003a9db-8d8d-49e6-bf0c-990e34ac7707"
_OBJECT_TYPE = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:"
REGISTRY_PACKAGE_TYPE: Final = _OBJECT_TYPE + "RegistryPackage"
ASSOCIATION_TYPE: Final = _OBJECT_TYPE + "Association"
CLASSIFICATION_TYPE: Final = _OBJECT_TYPE + "Classification"
EXTERNAL_IDENTIFIER_TYPE: Final = _OBJECT_TYPE + "ExternalIdentifier"

# --- DocumentEntry -----------------------------------------------------------------------------
DE_AUTHOR: Final = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS_CODE: Final = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONFIDENTIALITY_CODE: Final = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_EVENT_CODE: Final = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
DE_FORMAT_CODE: Final = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_FACILITY_CODE: Final = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE_CODE: Final = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE_CODE: Final = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_PATIENT_ID: Final = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID: Final = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"

# --- SubmissionSet -----------------------------------------------------------------------------
SS_AUTHOR: Final = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE_CODE: Final = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_PATIENT_ID: Final = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE_ID: Final = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_UNIQUE_ID: Final = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"

# --- Folder --------------------------------------------------------------------------------------
FOLDER_CODE_LIST: Final = "urn:uuid:1ba97051-7806-41a8-a48b-8fce7af683c5"
FOLDER_PATIENT_ID: Final = "urn:uuid:f64ffdf0-4b97-4e06-b79f-a52b38ec2f8a"
FOLDER_UNIQUE_ID: Final = "urn:uuid:75df8f67-9973-4fbe-a900-df66cefecc5a"

# --- associations --------------------------------------------------------------------------------
HAS_MEMBER: Final = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC: Final = "urn:ihe:iti:2007:AssociationType:RPLC"
APND: Final = "urn:ihe:iti:2007:AssociationType:APND"
XFRM: Final = "urn:ihe:iti:2007:AssociationType:XFRM"
XFRM_RPLC: Final = "urn:ihe:iti:2007:AssociationType:XFRM_RPLC"
SIGNS: Final = "urn:ihe:iti:2007:AssociationType:signs"
IS_SNAPSHOT_OF: Final = "urn:ihe:iti:2010:AssociationType:IsSnapshotOf"
UPDATE_AVAILABILITY_STATUS: Final = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"
SUBMIT_ASSOCIATION: Final = "urn:ihe:iti:2010:AssociationType:SubmitAssociation"
RELATIONSHIP_TYPES: Final = frozenset({RPLC, APND, XFRM, XFRM_RPLC, SIGNS, IS_SNAPSHOT_OF})
REPLACEMENT_TYPES: Final = frozenset({RPLC, XFRM_RPLC})
ASSOCIATION_TYPES: Final = RELATIONSHIP_TYPES | {HAS_MEMBER}

# --- statuses ------------------------------------------------------------------------------------
APPROVED: Final = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED: Final = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
SUBMITTED: Final = "urn:oasis:names:tc:ebxml-regrep:StatusType:Submitted"
# The DMP's own availability statuses (ITI-57 UpdateAvailabilityStatus, CI-SIS): archived
# documents stay for medico-legal purposes, deleted ones leave every view.
ARCHIVED: Final = "urn:asip:ci-sis:2010:StatusType:Archived"
DELETED: Final = "urn:asip:ci-sis:2010:StatusType:Deleted"
AVAILABILITY_STATUSES: Final = frozenset({APPROVED, DEPRECATED, ARCHIVED, DELETED})

RESPONSE_SUCCESS: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
RESPONSE_FAILURE: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
RESPONSE_PARTIAL: Final = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"

# --- stored queries (ITI-18) ---------------------------------------------------------------------
FIND_DOCUMENTS: Final = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
FIND_DOCUMENTS_BY_REFERENCE_ID: Final = "urn:uuid:12941a89-e02e-4be5-967c-ce4bfc8fe492"
FIND_SUBMISSION_SETS: Final = "urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9"
FIND_FOLDERS: Final = "urn:uuid:958f3006-baad-4929-a4de-ff1114824431"
GET_ALL: Final = "urn:uuid:10b545ea-725c-446d-9b95-8aeb444eddf3"
GET_DOCUMENTS: Final = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
GET_FOLDERS: Final = "urn:uuid:5737b14c-8a1a-4539-b659-e03a34a5e1e4"
GET_ASSOCIATIONS: Final = "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155"
GET_DOCUMENTS_AND_ASSOCIATIONS: Final = "urn:uuid:bab9529a-4a10-40b3-a01f-f68a615d247a"
GET_SUBMISSION_SETS: Final = "urn:uuid:51224314-5390-4169-9b91-b1980040715a"
GET_SUBMISSION_SET_AND_CONTENTS: Final = "urn:uuid:e8e3cb2c-e39c-46b9-99e4-c12f57260b83"
GET_FOLDER_AND_CONTENTS: Final = "urn:uuid:b909a503-523d-4517-8acf-8e5834dfc4c7"
GET_FOLDERS_FOR_DOCUMENT: Final = "urn:uuid:10cae35a-c7f9-4cf5-b61e-fc3278ffb578"
GET_RELATED_DOCUMENTS: Final = "urn:uuid:d90e5407-b356-4d91-a89f-873917b4b0e6"

# --- SOAP actions ------------------------------------------------------------------------------
ACTION_PNR: Final = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ACTION_REGISTER: Final = "urn:ihe:iti:2007:RegisterDocumentSet-b"
ACTION_STORED_QUERY: Final = "urn:ihe:iti:2007:RegistryStoredQuery"
ACTION_RETRIEVE: Final = "urn:ihe:iti:2007:RetrieveDocumentSet"
ACTION_UPDATE: Final = "urn:ihe:iti:2010:UpdateDocumentSet"
ACTION_DELETE: Final = "urn:ihe:iti:2010:DeleteDocumentSet"


def response_action(action: str) -> str:
    """The WS-Addressing Action of the answer to ``action``: IHE appends ``Response``, except
    for ITI-57, which the national DMP's WSDL and answers spell ``UpdateDocumentSet-Response``
    (WCF-generated DMP clients check it against their contract)."""
    if action == ACTION_UPDATE:
        return "urn:ihe:iti:2010:UpdateDocumentSet-Response"
    return action + "Response"
