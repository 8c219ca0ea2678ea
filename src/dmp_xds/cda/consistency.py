"""Does a submitted CDA document say what its DocumentEntry says? (ITI-41, before storing)

The registry answers queries and the DMP enforces access from the metadata alone, so metadata
that contradicts the document is worse than useless: a document filed under the wrong patient, a
report typed as something else, a confidentiality level the document does not carry. The CI-SIS
derives these metadata from the CDA header (research-notes/dmp-france.md §5); we check the
derivation for the fields a consumer or the access policy relies on:

==========================  ===================================================================
DocumentEntry               CDA header
==========================  ===================================================================
patientId                   ``recordTarget/patientRole/id`` (root = the CX OID, extension = id)
uniqueId                    ``id`` (``root`` or ``root^extension``)
typeCode                    ``code`` (code and codeSystem)
confidentialityCode         ``confidentialityCode`` is one of the entry's codes
creationTime                ``effectiveTime``, converted to UTC, at the common precision
languageCode                ``languageCode`` (when the header has one; case-insensitive)
authorPerson                each author id the entry names is an ``author/assignedAuthor/id``
formatCode                  ``nonXMLBody`` media type <-> IHE XDS-SD format code
==========================  ===================================================================

Every mismatch is an ``XDSRepositoryMetadataError`` (the DMP documents no code of its own for
this) located as ``DocumentEntry <id> / <attribute>``. Messages name the CDA element and the
values compared, except identifiers of people (patient, author), which never leave the server.

Policy for XML that is not a CDA document: a ``text/xml`` (or ``application/xml``) document must
be well-formed XML, because that is what its mimeType promises every consumer, who will hand it
to an XML parser; a malformed one is refused at ``/ mimeType``. Well-formed XML whose root is not
``{urn:hl7-org:v3}ClinicalDocument`` is stored as it is. Other MIME types are not looked at.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from ..errors import ErrorCode, XdsError
from ..metadata.datatypes import is_dtm, parse_patient_id
from ..metadata.model import Code, DocumentEntry
from .header import CdaHeader, NotWellFormed, read_header
from .times import same_instant

XML_MIME_TYPES = frozenset({"text/xml", "application/xml"})

IHE_FORMAT_SCHEME = "1.3.6.1.4.1.19376.1.2.3"
UNSTRUCTURED_FORMATS = {
    "application/pdf": "urn:ihe:iti:xds-sd:pdf:2008",
    "text/plain": "urn:ihe:iti:xds-sd:text:2008",
    "image/jpeg": "urn:ihe:iti-fr:xds-sd:jpeg:2010",
    "image/tiff": "urn:ihe:iti-fr:xds-sd:tiff:2010",
    "text/rtf": "urn:ihe:iti-fr:xds-sd:rtf:2010",
    "application/rtf": "urn:ihe:iti-fr:xds-sd:rtf:2010",
}
"""XDS-SD (CDA level 1) format codes by ``nonXMLBody`` media type (JDV_J60, TRE_A11)."""


class HasPath(Protocol):
    """A spooled document (:class:`dmp_xds.soap.mtom.SpooledPart`): only its file is read."""

    path: Path


def check_documents(
    docs: Iterable[DocumentEntry], contents: Mapping[str, HasPath]
) -> list[XdsError]:
    """Errors of every XML document of a submission against its DocumentEntry."""
    errors: list[XdsError] = []
    for doc in docs:
        part = contents.get(doc.id)
        if part is not None and _is_xml(doc.mime_type):
            errors += check_document(doc, part.path)
    return errors


def _is_xml(mime_type: str | None) -> bool:
    return (mime_type or "").split(";", 1)[0].strip().lower() in XML_MIME_TYPES


def check_document(doc: DocumentEntry, path: Path) -> list[XdsError]:
    """Read the document at ``path`` and compare its CDA header, if any, with ``doc``."""
    try:
        header = read_header(path)
    except NotWellFormed as exc:
        return [
            _error(
                doc,
                "mimeType",
                f"mimeType is {doc.mime_type} but the document is not well-formed XML: {exc}",
            )
        ]
    return [] if header is None else compare(doc, header)


def compare(doc: DocumentEntry, header: CdaHeader) -> list[XdsError]:
    """Every disagreement between a DocumentEntry and a CDA header."""
    checks = (
        _patient,
        _unique_id,
        _type_code,
        _confidentiality,
        _creation_time,
        _language,
        _authors,
        _format_code,
    )
    errors: list[XdsError] = []
    for check in checks:
        errors += check(doc, header)
    return errors


def _error(doc: DocumentEntry, attribute: str, message: str) -> XdsError:
    return XdsError(ErrorCode.REPOSITORY_METADATA, message, f"{doc.label} / {attribute}")


def _patient(doc: DocumentEntry, header: CdaHeader) -> list[XdsError]:
    if not doc.patient_id:
        return []
    try:
        patient = parse_patient_id(doc.patient_id)
    except ValueError:
        return []  # metadata validation reports it
    if not header.patient_ids:
        return [_error(doc, "patientId", "the CDA header has no recordTarget/patientRole/id")]
    ids = header.patient_ids
    if any(ii.root == patient.authority and ii.extension == patient.id for ii in ids):
        return []
    roots = sorted({ii.root for ii in header.patient_ids})
    return [
        _error(
            doc,
            "patientId",
            "the CDA recordTarget/patientRole/id does not carry the DocumentEntry patientId "
            f"(identifier domain {patient.authority}; the CDA has ids under {', '.join(roots)})",
        )
    ]


def _unique_id(doc: DocumentEntry, header: CdaHeader) -> list[XdsError]:
    if not doc.unique_id:
        return []
    if header.id is None:
        return [_error(doc, "uniqueId", "the CDA header has no ClinicalDocument/id with a root")]
    if header.id.as_unique_id == doc.unique_id:
        return []
    return [
        _error(
            doc,
            "uniqueId",
            f"uniqueId {doc.unique_id} differs from the CDA ClinicalDocument/id "
            f"{header.id.as_unique_id}",
        )
    ]


def _same_code(code: Code, cda_code: str | None, cda_system: str | None) -> bool:
    return code.code == cda_code and code.scheme == cda_system


def _type_code(doc: DocumentEntry, header: CdaHeader) -> list[XdsError]:
    if doc.type_code is None:
        return []
    if header.code is None:
        return [_error(doc, "typeCode", "the CDA header has no ClinicalDocument/code")]
    if _same_code(doc.type_code, header.code.code, header.code.code_system):
        return []
    return [
        _error(
            doc,
            "typeCode",
            f"typeCode {doc.type_code.code} ({doc.type_code.scheme}) differs from the CDA "
            f"ClinicalDocument/code {header.code.code} ({header.code.code_system})",
        )
    ]


def _confidentiality(doc: DocumentEntry, header: CdaHeader) -> list[XdsError]:
    if not doc.confidentiality_codes:
        return []
    cda = header.confidentiality
    if cda is None:
        return [_error(doc, "confidentialityCode", "the CDA header has no confidentialityCode")]
    if any(_same_code(c, cda.code, cda.code_system) for c in doc.confidentiality_codes):
        return []
    listed = ", ".join(f"{c.code} ({c.scheme})" for c in doc.confidentiality_codes)
    return [
        _error(
            doc,
            "confidentialityCode",
            f"the CDA confidentialityCode {cda.code} ({cda.code_system}) is not among the "
            f"DocumentEntry confidentialityCodes {listed}",
        )
    ]


def _creation_time(doc: DocumentEntry, header: CdaHeader) -> list[XdsError]:
    if not doc.creation_time or not is_dtm(doc.creation_time):
        return []  # metadata validation reports it
    if not header.effective_time:
        return [_error(doc, "creationTime", "the CDA header has no effectiveTime/@value")]
    try:
        if same_instant(header.effective_time, doc.creation_time):
            return []
    except ValueError as exc:
        return [_error(doc, "creationTime", f"the CDA effectiveTime is unusable: {exc}")]
    return [
        _error(
            doc,
            "creationTime",
            f"creationTime {doc.creation_time} (UTC) differs from the CDA effectiveTime "
            f"{header.effective_time}",
        )
    ]


def _language(doc: DocumentEntry, header: CdaHeader) -> list[XdsError]:
    # languageCode is optional in CDA R2 (the CI-SIS requires it): nothing to contradict if absent.
    if not doc.language_code or not header.language:
        return []
    if doc.language_code.lower() == header.language.lower():
        return []
    return [
        _error(
            doc,
            "languageCode",
            f"languageCode {doc.language_code} differs from the CDA languageCode {header.language}",
        )
    ]


def _xcn_id(person: str) -> tuple[str, str | None] | None:
    """(id, assigning authority OID or None) of an XCN authorPerson, or None if it has no id."""
    comps = person.split("^")
    if not comps[0]:
        return None
    authority = None
    if len(comps) > 8:
        hd = comps[8].split("&")
        if len(hd) > 1 and hd[1]:
            authority = hd[1]
    return comps[0], authority


def _authors(doc: DocumentEntry, header: CdaHeader) -> list[XdsError]:
    """Each author the entry identifies must be an author of the document.

    One direction only: a DocumentEntry may name fewer authors than the document has, but an
    entry that credits someone the document does not is refused, because authorship is what the
    DMP's rights to mask or delete a document rest on.
    """
    errors = []
    for number, author in enumerate(doc.authors, start=1):
        ident = _xcn_id(author.person) if author.person else None
        if ident is None:
            continue
        person_id, authority = ident
        if any(
            ii.extension == person_id and (authority is None or ii.root == authority)
            for ii in header.author_ids
        ):
            continue
        domain = f" (identifier domain {authority})" if authority else ""
        errors.append(
            _error(
                doc,
                "authorPerson",
                f"the authorPerson of author {number}{domain} is not an author of the CDA "
                "document (no matching author/assignedAuthor/id)",
            )
        )
    return errors


def _format_code(doc: DocumentEntry, header: CdaHeader) -> list[XdsError]:
    fmt = doc.format_code
    if fmt is None or fmt.scheme != IHE_FORMAT_SCHEME or header.body is None:
        return []
    if header.body == "nonXMLBody":
        media = (header.body_media_type or "text/plain").lower()
        expected = UNSTRUCTURED_FORMATS.get(media)
        if expected is None or fmt.code == expected:
            return []
        return [
            _error(
                doc,
                "formatCode",
                f"formatCode {fmt.code} does not fit the CDA nonXMLBody of media type {media} "
                f"(expected {expected})",
            )
        ]
    if fmt.code in UNSTRUCTURED_FORMATS.values():
        return [
            _error(
                doc,
                "formatCode",
                f"formatCode {fmt.code} is for a CDA with a nonXMLBody, but this document has a "
                "structuredBody",
            )
        ]
    return []
