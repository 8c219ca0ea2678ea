"""Schema validation of XDS payloads against our own XSDs (``schemas/all.xsd``).

Why a schema step at all: the domain parser (:mod:`.ebrim`) reads what it knows and would
silently ignore misplaced or misspelt elements; the schema catches those, cheaply, before any
metadata rule runs. It is the first check a payload meets after the SOAP layer hands it over.

Design choices, and why:

* **One compiled schema per thread.** ``all.xsd`` imports every message schema, so one
  ``etree.XMLSchema`` validates any root (SubmitObjectsRequest, ProvideAndRegister...,
  AdhocQueryRequest, RegistryResponse, ...). Compiling it takes under a millisecond, but a
  compiled lxml schema keeps the error log of its last run on the object itself, so two
  threads sharing one would mix their errors. A per-thread instance (lazy, via
  ``threading.local``) is cheaper than a lock and safe under gunicorn's ``gthread`` workers.
* **XOP-packaged documents are validated as received.** After MTOM decoding, an
  ``xdsb:Document`` holds an ``xop:Include`` element instead of base64 text (the bytes were
  spooled to disk, never inlined). ``xdsb.xsd`` keeps the standard ``xs:base64Binary`` type
  (published in our WSDL, so generated clients see a binary field), which has no room for an
  element. :func:`payload_errors` therefore checks the XOP form of each such Document itself
  (exactly one ``xop:Include`` with an ``href``, nothing else), empties those Documents for
  the duration of the schema run (an empty base64Binary is valid) and puts their content back
  before returning, also on error. Emptying in place was chosen over validating a deep copy
  after measuring: for a 100-document ProvideAndRegister the copy alone cost about 9 ms, three
  times the validation itself, while emptying and restoring cost about 0.2 ms. Payload trees
  belong to one request and are not shared between threads, so the brief in-place change is
  not observable. An ``xop:Include`` anywhere else is left alone, and the schema refuses it.
* **Messages never echo document content.** libxml2 quotes offending values ("'X' is not a
  valid value of ..."), which in XDS may be a patient name or identifier, and the messages go
  back to the client and into logs. Every quoted value is replaced by ``'…'``; element and
  attribute names, schema types, facets and limits are kept, and well-known namespaces are
  shortened to their usual prefixes. Each message starts with its line and the element's path
  (element names and positions only), because many clients send the whole envelope on one
  line.

Cost (lxml 6.1.3 / libxml2 2.14, one thread, valid payloads, median of warm runs; payloads
built by ``many_documents`` in ``tests/unit/test_schemas.py``): a 1-document
SubmitObjectsRequest (9 KB) takes 0.04 ms, a 10-document one (65 KB) 0.28 ms, a 100-document
one (630 KB) 3.1-3.5 ms; the same wrapped in a ProvideAndRegister with 100 XOP Includes
3.9 ms. For scale, merely parsing the 100-document bytes takes about 6.8 ms. The first call in
each thread compiles the schema: about 1 ms.
"""

from __future__ import annotations

import re
import threading

from lxml import etree

from ..namespaces import LCM, QUERY, RIM, RMD, RS, XDSB, XOP
from ..resources import resource_dir

__all__ = ["MAX_MESSAGES", "payload_errors", "schema"]

#: At most this many messages are returned; a hostile or badly broken payload can make libxml2
#: report thousands, and the caller turns each into a RegistryError.
MAX_MESSAGES = 50

_DRIVER = "all.xsd"
_XOP_INCLUDE = f"{{{XOP}}}Include"
_XDSB_DOCUMENT = f"{{{XDSB}}}Document"

_local = threading.local()

_PREFIXES = {
    RIM: "rim",
    RS: "rs",
    LCM: "lcm",
    QUERY: "query",
    XDSB: "xdsb",
    RMD: "rmd",
    XOP: "xop",
    "http://www.w3.org/XML/1998/namespace": "xml",
}
_CLARK = re.compile(r"\{([^{}]*)\}")
# "Element 'NAME'" or "Element 'NAME', attribute 'NAME'": names cannot contain quotes.
_HEADER = re.compile(r"Element '[^']*'(?:, attribute '[^']*')?: ")
# What follows the offending value in libxml2's value messages ("'V' is not a valid value of
# the atomic type ...", "The value 'V' is not an element of the set ...", "... has more digits").
_AFTER_VALUE = ("' is ", "' has ", "' does ")
_QUOTED = re.compile(r"'([^']*)'")
# Any other quoted string is kept only when the words just before it say it is a name, a type,
# a facet or a limit from the schema; anything else may have come from the document: masked.
_KEEP_AFTER = re.compile(
    r"(?:Element|attribute|\[facet|type|type is|length of|length is|digits of|than)\s*$"
)
# "... is not an element of the set {'A', 'B'}": the set lists schema values, kept verbatim.
_SET_MARKER = " is not an element of the set "
_MASK = "'…'"
_MAX_MESSAGE = 1000
_CUT_SUSPECT = 16_000  # libxml2 cuts its messages at about 64 KB


def schema() -> etree.XMLSchema:
    """This thread's compiled ``all.xsd`` (compiled on first use)."""
    compiled = getattr(_local, "schema", None)
    if compiled is None:
        path = resource_dir("schemas") / _DRIVER
        # Our own files, but parsed like everything else: no entities, no DTD, no network (the
        # imports are local file names). A parser per thread: lxml parsers are not shareable.
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        compiled = etree.XMLSchema(etree.parse(str(path), parser))
        _local.schema = compiled
    return compiled


def payload_errors(element: etree._Element) -> list[str]:
    """Validate one payload element against our schemas; return readable messages.

    An empty list means valid. ``element`` may be the root of its document or any element in it
    (e.g. the first child of a SOAP Body); it is returned unchanged. ``xdsb:Document`` elements
    in XOP form (holding an ``xop:Include``) are accepted, see the module docstring.
    """
    messages: list[str] = []
    hollowed: list[tuple[etree._Element, str | None, list[etree._Element]]] = []
    try:
        for document in _xop_documents(element):
            problem = _xop_problem(document)
            if problem:
                messages.append(_prefix(element, document) + problem)
            # Empty the element for the schema run (an empty base64Binary is valid); the
            # children keep their tails, so putting them back restores the tree exactly.
            hollowed.append((document, document.text, list(document)))
            document.text = None
            document[:] = []
        validator = schema()
        if not validator.validate(element):
            messages.extend(_format(entry) for entry in validator.error_log)
    finally:
        for document, text, children in hollowed:
            document.text = text
            document.extend(children)
    if len(messages) > MAX_MESSAGES:
        hidden = len(messages) - MAX_MESSAGES
        messages = [*messages[:MAX_MESSAGES], f"... and {hidden} more schema errors"]
    return messages


def _xop_documents(element: etree._Element) -> list[etree._Element]:
    """The ``xdsb:Document`` elements under ``element`` that hold an ``xop:Include``."""
    found: dict[etree._Element, None] = {}  # ordered, and one entry per Document
    for include in element.iter(_XOP_INCLUDE):
        parent = include.getparent()
        if parent is not None and parent.tag == _XDSB_DOCUMENT:
            found[parent] = None
    return list(found)


def _xop_problem(document: etree._Element) -> str | None:
    """What is wrong with the XOP form of one ``xdsb:Document``, if anything (XOP 1.0: the
    Include is the only content of the element it replaces the bytes of)."""
    children = [c for c in document if isinstance(c.tag, str)]
    text = "".join([document.text or "", *((c.tail or "") for c in document)]).strip()
    if len(children) != 1 or children[0].tag != _XOP_INCLUDE or text:
        return "Element 'xdsb:Document': an xop:Include must be the only content of its element."
    if not children[0].get("href"):
        return "Element 'xop:Include': The attribute 'href' is required but missing."
    return None


def _prefix(payload: etree._Element, element: etree._Element) -> str:
    """``line N, /path: `` for a message about ``element``, the path starting at ``payload`` as
    libxml2's own paths do (the SOAP envelope around it is not part of the payload)."""
    tree = element.getroottree()
    payload_path = tree.getpath(payload)
    root_step = payload_path.rsplit("/", 1)[-1].split("[", 1)[0]
    path = f"/{root_step}{tree.getpath(element)[len(payload_path) :]}"
    return f"line {element.sourceline}, {path}: "


def _format(entry: etree._LogEntry) -> str:
    return f"line {entry.line}, {entry.path}: {_sanitize(entry.message)}"


def _sanitize(message: str) -> str:
    """Mask the document values libxml2 quotes, keep names; shorten known namespaces.

    Linear in the message length: libxml2 quotes values whole (and cuts messages at about
    64 KB, possibly inside the value), so a hostile value must cost neither time nor secrecy.
    """
    header = _HEADER.match(message)
    head = header.group(0) if header else ""
    rest = message[len(head) :]
    if rest.startswith("'"):
        start = 0
    else:
        found = rest.find("value '")
        start = found + len("value ") if found >= 0 else -1
    if start >= 0:
        # The value runs from its opening quote to the last closing quote followed by libxml2's
        # own wording. A message that was cut (no final full stop, or long enough to have been)
        # may end inside the value: then everything from the value on is withheld.
        complete = message.endswith(".") and len(message) < _CUT_SUSPECT
        end = max(rest.rfind(after) for after in _AFTER_VALUE) if complete else -1
        rest = rest[:start] + _MASK + (rest[end + 1 :] if end > start else "")
    body, marker, schema_values = rest.partition(_SET_MARKER)
    out: list[str] = []
    last = 0
    for match in _QUOTED.finditer(body):
        out.append(body[last : match.start()])
        window = body[max(0, match.start() - 12) : match.start()]
        keep = match.group(0) == _MASK or _KEEP_AFTER.search(window)
        out.append(match.group(0) if keep else _MASK)
        last = match.end()
    out.append(body[last:])
    text = _CLARK.sub(_short_name, head + "".join(out)) + marker + schema_values
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _short_name(match: re.Match[str]) -> str:
    prefix = _PREFIXES.get(match.group(1))
    return f"{prefix}:" if prefix else match.group(0)
