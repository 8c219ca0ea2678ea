"""Errors as values: every failure the server reports carries a standard XDS error code.

Validation collects a list of :class:`XdsError` and never stops at the first problem, so that a
submitter learns everything wrong with a submission in one answer. :class:`XdsFailure` carries such
a list up to the transaction boundary, where it becomes a RegistryResponse with status Failure.
Transport and security problems are SOAP faults instead (:class:`SoapFault`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    """Standard error codes of IHE ITI TF-3 4.2.4.1 (and the ones ITI-57/62 add)."""

    REGISTRY_METADATA = "XDSRegistryMetadataError"
    REPOSITORY_METADATA = "XDSRepositoryMetadataError"
    PATIENT_ID_DOES_NOT_MATCH = "XDSPatientIdDoesNotMatch"
    DUPLICATE_UNIQUE_ID_IN_MESSAGE = "XDSRegistryDuplicateUniqueIdInMessage"
    REPOSITORY_DUPLICATE_UNIQUE_ID_IN_MESSAGE = "XDSRepositoryDuplicateUniqueIdInMessage"
    DUPLICATE_UNIQUE_ID_IN_REGISTRY = "XDSDuplicateUniqueIdInRegistry"
    UNKNOWN_PATIENT_ID = "XDSUnknownPatientId"
    MISSING_DOCUMENT = "XDSMissingDocument"
    MISSING_DOCUMENT_METADATA = "XDSMissingDocumentMetadata"
    NON_IDENTICAL_HASH = "XDSNonIdenticalHash"
    NON_IDENTICAL_SIZE = "XDSNonIdenticalSize"
    UNKNOWN_REPOSITORY_ID = "XDSUnknownRepositoryId"
    DOCUMENT_UNIQUE_ID = "XDSDocumentUniqueIdError"
    UNKNOWN_STORED_QUERY = "XDSUnknownStoredQuery"
    STORED_QUERY_PARAM_NUMBER = "XDSStoredQueryParamNumber"
    STORED_QUERY_MISSING_PARAM = "XDSStoredQueryMissingParam"
    TOO_MANY_RESULTS = "XDSTooManyResults"
    RESULT_NOT_SINGLE_PATIENT = "XDSResultNotSinglePatient"
    DEPRECATED_DOCUMENT = "XDSRegistryDeprecatedDocumentError"
    REGISTRY_ERROR = "XDSRegistryError"
    REPOSITORY_ERROR = "XDSRepositoryError"
    REGISTRY_BUSY = "XDSRegistryBusy"
    REPOSITORY_BUSY = "XDSRepositoryBusy"
    REGISTRY_NOT_AVAILABLE = "XDSRegistryNotAvailable"
    REGISTRY_OUT_OF_RESOURCES = "XDSRegistryOutOfResources"
    REPOSITORY_OUT_OF_RESOURCES = "XDSRepositoryOutOfResources"
    METADATA_UPDATE_OPERATION = "XDSMetadataUpdateOperationError"
    METADATA_VERSION = "XDSMetadataVersionError"
    UNRESOLVED_REFERENCE = "UnresolvedReferenceException"
    UNREFERENCED_OBJECT = "XDSUnreferencedObjectException"
    REFERENCES_EXIST = "ReferencesExistException"
    EXTRA_METADATA_NOT_SAVED = "XDSExtraMetadataNotSaved"
    # The national DMP's own codes: DMP-compatible software reads them in XDS answers too.
    DMP_ACCESS_DENIED = "DMPAccessDeniedByRightsService"
    DMP_CLOSED = "DMPClosed"


class Severity(StrEnum):
    ERROR = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"
    WARNING = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Warning"


@dataclass(frozen=True, slots=True)
class XdsError:
    """One entry of a RegistryErrorList.

    ``location`` names the offending object and attribute (for example
    ``DocumentEntry Document01 / creationTime``); it becomes the ``location`` attribute of the
    RegistryError, ``message`` its ``codeContext``.
    """

    code: ErrorCode
    message: str
    location: str = ""
    severity: Severity = Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


class XdsFailure(Exception):
    """Aborts a transaction; the errors are answered as a RegistryResponse with status Failure."""

    def __init__(self, errors: list[XdsError] | XdsError) -> None:
        self.errors = [errors] if isinstance(errors, XdsError) else list(errors)
        super().__init__("; ".join(f"{e.code}: {e.message}" for e in self.errors))


class FaultCode(StrEnum):
    """SOAP 1.2 fault codes (mapped to their SOAP 1.1 counterparts when answering 1.1)."""

    SENDER = "Sender"
    RECEIVER = "Receiver"
    VERSION_MISMATCH = "VersionMismatch"
    MUST_UNDERSTAND = "MustUnderstand"
    DATA_ENCODING_UNKNOWN = "DataEncodingUnknown"


class SoapFault(Exception):
    """A SOAP fault: malformed transport, unknown action, security refusal.

    ``subcode`` is a qualified name ``(namespace, local)``, for instance
    ``(WSSE_NS, "InvalidSecurity")``; ``http_status`` is what the transport answers (SOAP 1.2 HTTP
    binding: 400 for Sender faults, 500 for Receiver faults).
    """

    def __init__(
        self,
        code: FaultCode,
        reason: str,
        subcode: tuple[str, str] | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.subcode = subcode
        if http_status is None:
            http_status = 500 if code is FaultCode.RECEIVER else 400
        self.http_status = http_status
