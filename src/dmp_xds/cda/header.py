"""Reading the header of a CDA R2 document in one streaming pass, with bounded memory.

Why not :func:`dmp_xds.soap.xmlparser.parse_xml`: it parses bytes already in memory into a whole
tree, refuses processing instructions (CDA documents routinely start with an
``<?xml-stylesheet?>``) and answers with SOAP faults. A document can be hundreds of megabytes, most
of it one base64 text node (``nonXMLBody``), which lxml refuses above 10 MB unless ``huge_tree`` is
switched on, and then holds in memory. So the spooled file is read with expat (``pyexpat``), 64 KB
at a time, with no character-data handler at all: the header fields we compare are all
attributes, and body text flows through expat without ever becoming a Python object. Memory stays
at a few kilobytes whatever the size; time is linear (about 0.1 s for 50 MB).

The pass goes to the end of the document rather than stopping at the body, because the verdict
"this ``text/xml`` is well-formed XML" is part of what is checked (see
:mod:`dmp_xds.cda.consistency`); but once a walker has what it wants (the header ends where the
body starts) its Python handlers are detached, so the body is checked by expat alone, in C.
The same hardening rule as the SOAP layer applies: any document type declaration is refused,
so no entity can be declared, let alone expanded or fetched.
"""

from __future__ import annotations

import pyexpat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..namespaces import HL7V3

CHUNK = 64 * 1024
MAX_IDS = 64
"""Patient and author ids kept from one header: a real header has a handful; a hostile one with
millions would otherwise grow a list without bound."""

_SEP = " "
_V3 = HL7V3 + _SEP
_ROOT = _V3 + "ClinicalDocument"
# Where a walker stops calling Python: a structured body's start, or a non-XML body's ``text``
# (its first element, whose media type the walkers read).
_BODY_STARTS = frozenset({("component", "structuredBody"), ("component", "nonXMLBody", "text")})


class NotWellFormed(Exception):
    """The document is not XML we accept: syntax error, or a document type declaration."""


@dataclass(frozen=True, slots=True)
class InstanceId:
    """An HL7 ``II``: ``root`` OID (or UUID) and optional ``extension``."""

    root: str
    extension: str | None = None

    @property
    def as_unique_id(self) -> str:
        """The XDS form: ``root`` alone, or ``root^extension`` (ITI TF-3 4.2.3.2.26)."""
        return f"{self.root}^{self.extension}" if self.extension else self.root


@dataclass(frozen=True, slots=True)
class CodedValue:
    code: str | None
    code_system: str | None


@dataclass(slots=True)
class CdaHeader:
    """The header fields that XDS metadata is derived from (CI-SIS mapping, dmp-france.md §5)."""

    id: InstanceId | None = None
    code: CodedValue | None = None
    effective_time: str | None = None
    confidentiality: CodedValue | None = None
    language: str | None = None
    template_ids: list[str] = field(default_factory=list)
    patient_ids: list[InstanceId] = field(default_factory=list)
    author_ids: list[InstanceId] = field(default_factory=list)
    body: str | None = None
    """``structuredBody`` or ``nonXMLBody`` (None if the document has no body)."""
    body_media_type: str | None = None
    """``nonXMLBody/text/@mediaType`` (HL7 default ``text/plain`` when absent)."""


def instance_id(attrs: dict[str, str]) -> InstanceId | None:
    """The ``II`` of an element's attributes (None without a root)."""
    root = attrs.get("root")
    if not root:
        return None
    return InstanceId(root, attrs.get("extension") or None)


class HeaderWalker:
    """One expat pass over a CDA document: the path of the first ``max_depth`` levels (HL7 v3
    names without their namespace, others prefixed with ``?``), handed with each element's
    attributes to :meth:`pick`; the text of the paths in ``texts``, capped at ``max_text``
    characters and with whitespace collapsed, handed to :meth:`keep_text`. A document whose
    root is not a ``ClinicalDocument`` is only checked for well-formedness; any document type
    declaration is refused. Subclasses say what to keep (this module's header, the producer's
    metadata in :mod:`.metadata`)."""

    max_depth = 4
    texts: frozenset[tuple[str, ...]] = frozenset()
    max_text = 512

    def __init__(self) -> None:
        self.parser = pyexpat.ParserCreate(namespace_separator=_SEP)
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.parser.StartDoctypeDeclHandler = self._doctype
        self.path: list[str] = []
        self.depth = 0
        self.is_cda: bool | None = None
        self._text: list[str] | None = None
        self._text_len = 0

    def walk(self, stream: BinaryIO) -> bool:
        """Read ``stream`` to its end; whether it is a CDA. Raises :class:`NotWellFormed` with
        expat's position (line and column, never content)."""
        try:
            while chunk := stream.read(CHUNK):
                self.parser.Parse(chunk, False)
            self.parser.Parse(b"", True)
        except pyexpat.ExpatError as exc:
            reason = pyexpat.ErrorString(exc.code)
            raise NotWellFormed(f"{reason} at line {exc.lineno}, column {exc.offset}") from None
        return bool(self.is_cda)

    def pick(self, path: tuple[str, ...], attrs: dict[str, str]) -> None:
        """An element at ``path`` (below ClinicalDocument) and its attributes."""

    def keep_text(self, path: tuple[str, ...], text: str | None) -> None:
        """The text of an element whose path is in ``texts``."""

    def _detach(self) -> None:
        self.parser.StartElementHandler = None
        self.parser.EndElementHandler = None
        self.parser.CharacterDataHandler = None

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1:
            self.is_cda = name == _ROOT
            if not self.is_cda:
                self._detach()  # nothing to collect
                return
        if self.depth <= self.max_depth:
            self.path.append(name.removeprefix(_V3) if name.startswith(_V3) else "?" + name)
            path = tuple(self.path[1:])
            self.pick(path, attrs)
            if path in _BODY_STARTS:
                # The body is the last child of ClinicalDocument (CDA R2 schema): the header
                # is over, the rest is only checked for well-formedness, by expat alone.
                self._detach()
            elif path in self.texts:
                self._text, self._text_len = [], 0
                self.parser.CharacterDataHandler = self._characters

    def _characters(self, data: str) -> None:
        if self._text is not None and self._text_len < self.max_text:
            self._text.append(data[: self.max_text - self._text_len])
            self._text_len += len(data)

    def _end(self, name: str) -> None:
        if self.depth <= self.max_depth:
            path = tuple(self.path[1:])
            if path in self.texts and self._text is not None:
                self.keep_text(path, " ".join("".join(self._text).split()) or None)
                self._text = None
                self.parser.CharacterDataHandler = None
            self.path.pop()
        self.depth -= 1

    def _doctype(self, *args: object) -> None:
        raise NotWellFormed("XML with a document type declaration is refused")


class _Collector(HeaderWalker):
    """The attributes the server compares with the metadata (no text at all)."""

    def __init__(self) -> None:
        super().__init__()
        self.header = CdaHeader()

    def pick(self, path: tuple[str, ...], attrs: dict[str, str]) -> None:
        h = self.header
        match path:
            case ("id",) if h.id is None:
                h.id = instance_id(attrs)
            case ("code",) if h.code is None:
                h.code = CodedValue(attrs.get("code"), attrs.get("codeSystem"))
            case ("effectiveTime",) if h.effective_time is None:
                h.effective_time = attrs.get("value")
            case ("confidentialityCode",) if h.confidentiality is None:
                h.confidentiality = CodedValue(attrs.get("code"), attrs.get("codeSystem"))
            case ("languageCode",) if h.language is None:
                h.language = attrs.get("code")
            case ("templateId",) if len(h.template_ids) < MAX_IDS and attrs.get("root"):
                h.template_ids.append(attrs["root"])
            case ("recordTarget", "patientRole", "id") if len(h.patient_ids) < MAX_IDS:
                ii = instance_id(attrs)
                if ii:
                    h.patient_ids.append(ii)
            case ("author", "assignedAuthor", "id") if len(h.author_ids) < MAX_IDS:
                ii = instance_id(attrs)
                if ii:
                    h.author_ids.append(ii)
            case ("component", ("structuredBody" | "nonXMLBody") as body) if h.body is None:
                h.body = body
            case ("component", "nonXMLBody", "text") if h.body_media_type is None:
                h.body_media_type = attrs.get("mediaType") or "text/plain"


def read_header(path: Path) -> CdaHeader | None:
    """The CDA header of the XML document at ``path``, or None if its root is not a CDA R2
    ``ClinicalDocument`` (the rest of such a document is still checked for well-formedness).

    Raises :class:`NotWellFormed` with expat's message (line and column, never content).
    """
    collector = _Collector()
    with open(path, "rb") as f:
        is_cda = collector.walk(f)
    return collector.header if is_cda else None
