"""Which DMP operations (TD3.3) an ITI-57 request performs on a document.

The DMP changes documents through ITI-57 only in a few ways: masking and unmasking to
professionals and making a document visible to the patient (new metadata versions whose
confidentiality codes differ), archiving, unarchiving and deleting (availability-status
updates). Naming the operation is what lets :func:`.access.change_document` apply the rights
matrix; a change that is none of these is refused rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from ..metadata import vocabulary as v
from ..metadata.model import Author, Code, DocumentEntry
from .access import INVISIBLE_PATIENT, INVISIBLE_REPRESENTANTS_LEGAUX, MASQUE_PS, REVISE

_HIDDEN_FROM_PATIENT = frozenset({INVISIBLE_PATIENT, INVISIBLE_REPRESENTANTS_LEGAUX})


class UnsupportedChange(ValueError):
    """A change the DMP does not allow at all (e.g. hiding a document from the patient after
    it was shared, or bringing a deleted document back)."""


def metadata_operations(before: Iterable[str], after: Iterable[str]) -> list[str]:
    """The operations of a new metadata version, from the confidentiality codes of the latest
    version and of the new one (as :func:`.facts.confidentiality_of` gives them: the DMP's
    own codes bare)."""
    old, new = frozenset(before), frozenset(after)
    operations = []
    if MASQUE_PS in new - old:
        operations.append("mask")
    if MASQUE_PS in old - new:
        operations.append("unmask")
    if (old & _HIDDEN_FROM_PATIENT) - new:
        operations.append("make_visible_to_patient")
    if (new & _HIDDEN_FROM_PATIENT) - old:
        raise UnsupportedChange("a document shared with the patient cannot be hidden again")
    # Changing neither masking nor visibility (title, codes...): no TD3.3 operation.
    return operations or [REVISE]


def revises(before: DocumentEntry, after: DocumentEntry) -> bool:
    """Whether a new metadata version changes anything but the confidentiality codes.

    Masking, unmasking and making visible (TD3.3a/b) change those codes only, and the matrix
    gives them to professionals other than the author; anything else the new version changes
    (authors, title, codes, times...) is a correction, the author's alone (REVISE), even when
    it travels with a masking. Codes are compared by code and scheme (not display name), and
    repeated values as sets, so a client that sends back the metadata it read, re-ordered or
    re-labelled, changes nothing."""
    return _essence(before) != _essence(after)


def _essence(doc: DocumentEntry) -> tuple[Hashable, ...]:
    return (
        doc.object_type,
        doc.mime_type,
        doc.patient_id,
        doc.unique_id,
        doc.title,
        doc.comments,
        *(_key(c) for c in (doc.class_code, doc.type_code, doc.format_code)),
        *(_key(c) for c in (doc.facility_code, doc.practice_code)),
        frozenset(c.key for c in doc.event_codes),
        frozenset(_author(a) for a in doc.authors),
        doc.creation_time,
        doc.service_start_time,
        doc.service_stop_time,
        doc.hash.lower() if doc.hash else None,
        doc.size,
        doc.repository_unique_id,
        doc.language_code,
        doc.legal_authenticator,
        doc.source_patient_id,
        frozenset(doc.source_patient_info),
        frozenset(doc.reference_ids),
        doc.availability,
        doc.limited_metadata,
    )


def _key(code: Code | None) -> str | None:
    return code.key if code else None


def _author(author: Author) -> Hashable:
    return (
        author.person,
        frozenset(author.institutions),
        frozenset(author.roles),
        frozenset(author.specialties),
        frozenset(author.telecoms),
    )


def status_operation(original: str, new: str) -> str:
    """The operation of an availability-status update."""
    if original == v.DELETED:
        raise UnsupportedChange("a deleted document stays deleted (only a purge removes it)")
    if new == v.DELETED:
        return "delete"
    if v.DEPRECATED in (original, new):
        return REVISE  # plain XDS deprecation (ITI-57): the submitter's business
    if new == v.ARCHIVED and original == v.APPROVED:
        return "archive"
    if original == v.ARCHIVED and new == v.APPROVED:
        return "unarchive"
    raise UnsupportedChange(f"the DMP does not change a document from {original} to {new}")
