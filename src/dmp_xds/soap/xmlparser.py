"""The one way untrusted XML enters the server (and the client): a hardened lxml parse.

SOAP 1.2 forbids document type declarations and processing instructions, and XDS has no use for
either, so instead of trying to make entities harmless we refuse any document that declares a
DOCTYPE at all. With ``resolve_entities=False`` lxml keeps entity *references* in the tree, so a
"harmless" DOCTYPE would still leak odd nodes into the metadata layer; refusing it is simpler and
safer. Depth is bounded because the metadata layer walks trees recursively.

Processing instructions are detected and refused rather than silently dropped: a parser built with
``remove_pis=True`` would make them invisible, and the rule is to reject them. Comments are removed
(harmless, and they would otherwise show up as children when walking the tree).

lxml parsers are not thread-safe, so each thread gets its own (gunicorn gthread workers, the
test server's threads).
"""

from __future__ import annotations

import threading
from functools import cache

from lxml import etree

from ..errors import FaultCode, SoapFault

_local = threading.local()
_XINCLUDE_PREFIXES = ("{http://www.w3.org/2001/XInclude}", "{http://www.w3.org/2003/XInclude}")


def _parser() -> etree.XMLParser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=False,  # kept so that they can be refused, see the module docstring
        )
        _local.parser = parser
    return parser


def parse_xml(data: bytes, *, max_depth: int = 200) -> etree._Element:
    """Parse ``data`` and return its root element, or raise a Sender :class:`SoapFault`.

    The fault reason carries at most libxml2's own message (which names a line and column, never
    the document's content), so nothing a patient wrote ends up in logs or replies.
    """
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise SoapFault(FaultCode.SENDER, f"malformed XML: {exc.msg}") from None
    if root is None:  # defensive: recover mode is off, but never hand None upwards
        raise SoapFault(FaultCode.SENDER, "malformed XML: no root element")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise SoapFault(FaultCode.SENDER, "XML with a document type declaration is refused")
    for sibling in (*root.itersiblings(preceding=True), *root.itersiblings()):
        if isinstance(sibling, etree._ProcessingInstruction):
            raise SoapFault(FaultCode.SENDER, "XML processing instructions are refused")
    _check_tree(root, max_depth)
    return root


def _check_tree(root: etree._Element, max_depth: int) -> None:
    """Depth bound, and no processing instruction, entity node or XInclude element. Each is
    one search done by libxml2 (lxml's tag filters and a compiled XPath), not a Python walk:
    this runs on every request, and an EAI batch's envelope holds tens of thousands of
    elements."""
    if next(root.iter(etree.ProcessingInstruction), None) is not None:
        raise SoapFault(FaultCode.SENDER, "XML processing instructions are refused")
    if next(root.iter(etree.Entity), None) is not None:
        raise SoapFault(FaultCode.SENDER, "XML entity references are refused")
    # lxml never runs XInclude unless asked, but an include element has no business in a SOAP
    # message and a later consumer might process it: refuse it outright.
    if next(root.iter(*_XINCLUDE_TAGS), None) is not None:
        raise SoapFault(FaultCode.SENDER, "XInclude elements are refused")
    if _deeper_than(max_depth)(root):
        raise SoapFault(
            FaultCode.SENDER, f"XML nesting deeper than {max_depth} elements is refused"
        )


_XINCLUDE_TAGS = tuple(prefix + "*" for prefix in _XINCLUDE_PREFIXES)


@cache
def _deeper_than(max_depth: int) -> etree.XPath:
    """Whether the document has an element below ``max_depth`` levels (the root is level 1)."""
    return etree.XPath("boolean(" + "/*" * (max_depth + 1) + ")")


def serialize(element: etree._Element, *, xml_declaration: bool = True) -> bytes:
    """UTF-8 bytes of ``element`` (with an XML declaration unless told otherwise)."""
    return etree.tostring(element, encoding="utf-8", xml_declaration=xml_declaration)
