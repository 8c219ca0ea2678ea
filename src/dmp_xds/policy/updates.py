"""Which DMP operations (TD3.3) an ITI-57 request performs on a document.

The DMP changes documents through ITI-57 only in a few ways: masking and unmasking to
professionals and making a document visible to the patient (new metadata versions whose
confidentiality codes differ), archiving, unarchiving and deleting (availability-status
updates). Naming the operation is what lets :func:`.access.change_document` apply the rights
matrix; a change that is none of these is refused rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..metadata import vocabulary as v
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
