"""The VIHF names one patient; a call may only touch that patient's record.

Pure functions over identifiers (no I/O), used by the registry and repository services:

- submissions (ITI-41, ITI-42) and patient-scoped queries (Find*, GetAll) state their patient:
  a different one is answered with the standard XDS error ``XDSPatientIdDoesNotMatch``, in the
  RegistryResponse, naming the offending object or query parameter. Not a SOAP fault: the
  caller *is* authenticated (that part is the security layer's, and its failures are faults);
  what is wrong is a field of the request, which an XDS error can point at, and which XDS
  clients already know how to report. The live DMP uses the same code for this case.
- queries by id (Get*) and ITI-43 name objects, not a patient: objects of another patient are
  left out as if they did not exist, so that a caller cannot learn whether an id belongs to
  someone else (an error would be an oracle over the whole registry).

Patients are compared on CX.1 and the assigning authority's OID only
(:class:`~dmp_xds.metadata.datatypes.PatientId`): the DMP's ``^NH`` type code and dates in
CX.5+ play no part in identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ..errors import ErrorCode, XdsError
from ..metadata.datatypes import PatientId, parse_patient_id
from ..metadata.model import Submission

# The ITI-18 parameters that name the patient of a query.
PATIENT_PARAMETERS = (
    "$XDSDocumentEntryPatientId",
    "$XDSSubmissionSetPatientId",
    "$XDSFolderPatientId",
    "$patientId",
)


def same_patient(authorised: PatientId | None, value: str | None) -> bool:
    """True when ``value`` (a CX) is the authorised patient. No authorised patient (a call
    that did not go through the security layer) matches nothing."""
    if authorised is None or not value:
        return False
    try:
        return parse_patient_id(value) == authorised
    except ValueError:
        return False


def _mismatch(where: str, what: str) -> XdsError:
    return XdsError(
        ErrorCode.PATIENT_ID_DOES_NOT_MATCH,
        f"{what} is not the patient named by the VIHF (resource-id)",
        where,
    )


def submission_errors(
    authorised: PatientId | None, objects: Iterable[tuple[str, str | None]]
) -> list[XdsError]:
    """``objects`` are (label, patientId) of the SubmissionSet, DocumentEntries and Folders of
    a submission; one error per object of another patient. Objects without a patient id are
    left to metadata validation."""
    return [
        _mismatch(f"{label} / patientId", f"the patientId of {label}")
        for label, value in objects
        if value and not same_patient(authorised, value)
    ]


def submission_patient_errors(authorised: PatientId | None, sub: Submission) -> list[XdsError]:
    """:func:`submission_errors` for every object of a submission that names a patient."""
    return submission_errors(
        authorised,
        [(o.label, o.patient_id) for o in (*sub.submission_sets, *sub.documents, *sub.folders)],
    )


def query_errors(
    authorised: PatientId | None, params: Mapping[str, Sequence[Sequence[str]]]
) -> list[XdsError]:
    """One error per patient parameter of a stored query that names another patient.

    A value that is not a CX at all is left to the query, which reports its own error."""
    errors = []
    for name in PATIENT_PARAMETERS:
        for group in params.get(name, ()):
            for value in group:
                if _readable(value) and not same_patient(authorised, value):
                    errors.append(_mismatch(name, f"query parameter {name}"))
    return errors


def _readable(value: str) -> bool:
    try:
        parse_patient_id(value)
    except ValueError:
        return False
    return True
