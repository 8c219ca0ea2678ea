"""The XDS domain model: plain dataclasses parsed from ebRIM (see :mod:`.ebrim`).

Each object keeps the lxml element it came from (``element``): the registry stores that element,
with symbolic ids resolved and computed slots added, and answers LeafClass queries with it, so that
what a submitter sent comes back faithfully, extra slots included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    scheme: str
    display: str | None = None

    @property
    def key(self) -> str:
        """The ``code^^scheme`` form that stored queries use."""
        return f"{self.code}^^{self.scheme}"


@dataclass(slots=True)
class Author:
    person: str | None = None
    institutions: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    specialties: list[str] = field(default_factory=list)
    telecoms: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RegistryObject:
    """What every top-level registry object shares."""

    id: str
    element: etree._Element
    lid: str | None = None
    version: str | None = None
    title: str | None = None
    comments: str | None = None
    home_community_id: str | None = None
    status: str | None = None
    submitted_id: str | None = None  # the id as the submitter wrote it (symbolic or UUID)

    @property
    def label(self) -> str:
        """How error locations name the object: by the id the submitter used."""
        return f"{type(self).__name__} {self.submitted_id or self.id}"


@dataclass(slots=True)
class DocumentEntry(RegistryObject):
    object_type: str = ""
    mime_type: str | None = None
    patient_id: str | None = None
    unique_id: str | None = None
    class_code: Code | None = None
    type_code: Code | None = None
    format_code: Code | None = None
    facility_code: Code | None = None
    practice_code: Code | None = None
    confidentiality_codes: list[Code] = field(default_factory=list)
    event_codes: list[Code] = field(default_factory=list)
    authors: list[Author] = field(default_factory=list)
    creation_time: str | None = None
    service_start_time: str | None = None
    service_stop_time: str | None = None
    hash: str | None = None
    size: str | None = None
    repository_unique_id: str | None = None
    language_code: str | None = None
    legal_authenticator: str | None = None
    source_patient_id: str | None = None
    source_patient_info: list[str] = field(default_factory=list)
    reference_ids: list[str] = field(default_factory=list)
    availability: str | None = None
    limited_metadata: bool = False


@dataclass(slots=True)
class SubmissionSet(RegistryObject):
    patient_id: str | None = None
    unique_id: str | None = None
    source_id: str | None = None
    submission_time: str | None = None
    content_type_code: Code | None = None
    authors: list[Author] = field(default_factory=list)
    intended_recipients: list[str] = field(default_factory=list)
    limited_metadata: bool = False


@dataclass(slots=True)
class Folder(RegistryObject):
    patient_id: str | None = None
    unique_id: str | None = None
    codes: list[Code] = field(default_factory=list)
    last_update_time: str | None = None


@dataclass(slots=True)
class Association(RegistryObject):
    type: str = ""
    source: str = ""
    target: str = ""
    submission_set_status: str | None = None


@dataclass(slots=True)
class Submission:
    """One SubmitObjectsRequest, ids resolved to UUIDs (``symbols`` maps symbolic -> UUID)."""

    submission_sets: list[SubmissionSet] = field(default_factory=list)
    documents: list[DocumentEntry] = field(default_factory=list)
    folders: list[Folder] = field(default_factory=list)
    associations: list[Association] = field(default_factory=list)
    object_refs: list[str] = field(default_factory=list)
    symbols: dict[str, str] = field(default_factory=dict)

    @property
    def submission_set(self) -> SubmissionSet | None:
        return self.submission_sets[0] if len(self.submission_sets) == 1 else None

    def objects(self) -> list[RegistryObject]:
        return [*self.submission_sets, *self.documents, *self.folders, *self.associations]
