"""Serving our WSDLs and XSDs at ``?wsdl`` and ``?xsd=<name>`` of each endpoint.

The files in ``wsdl/`` and ``schemas/`` refer to each other by relative paths
(``../schemas/rim.xsd``), which mean nothing to a client that fetched ``…/xds/registry?wsdl``.
:class:`WsdlPublisher` rewrites every import to an absolute URL on the same endpoint
(``<endpoint>?xsd=rim.xsd``) and sets the service address to the endpoint the client actually
reached, so that a toolkit pointed at one URL can load the whole contract without guessing.

Why lxml and not string replacement: the endpoint URL is typically derived from the request
(scheme, Host header, path), so it is untrusted text; setting it as an attribute through lxml
escapes it properly, and walking the parsed tree rewrites exactly the import attributes, never
a look-alike in a comment or in documentation.

Why names are checked against a fixed list: ``?xsd=`` is user input. Only plain file names that
exist in the schema folder when the publisher is built are served; nothing derived from the
request ever reaches the filesystem, so ``../`` and absolute paths cannot escape the folder.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from urllib.parse import urlsplit

from lxml import etree

__all__ = ["WsdlPublisher"]

_XSD = "http://www.w3.org/2001/XMLSchema"
_WSDL = "http://schemas.xmlsoap.org/wsdl/"
_SOAP11_BINDING = "http://schemas.xmlsoap.org/wsdl/soap/"
_SOAP12_BINDING = "http://schemas.xmlsoap.org/wsdl/soap12/"

# Elements whose attribute points at another schema or WSDL document.
_REFERENCES = {
    f"{{{_XSD}}}import": "schemaLocation",
    f"{{{_XSD}}}include": "schemaLocation",
    f"{{{_XSD}}}redefine": "schemaLocation",
    f"{{{_WSDL}}}import": "location",
}
_ADDRESSES = (f"{{{_SOAP12_BINDING}}}address", f"{{{_SOAP11_BINDING}}}address")

_XSD_NAME = re.compile(r"[A-Za-z0-9_.-]+\.xsd")
_WSDL_NAME = re.compile(r"[A-Za-z0-9_.-]+\.wsdl")


def _parser() -> etree.XMLParser:
    """A fresh hardened parser (lxml parsers must not be shared between threads)."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _load(folder: Path, pattern: re.Pattern[str]) -> dict[str, bytes]:
    """Raw bytes of every file of ``folder`` whose name matches ``pattern``."""
    return {
        path.name: path.read_bytes()
        for path in sorted(folder.iterdir())
        if path.is_file() and pattern.fullmatch(path.name)
    }


class WsdlPublisher:
    """Our WSDLs and XSDs, rewritten for the endpoint that serves them.

    The raw files are read once, when the publisher is built (a handful of small files); each
    call parses and rewrites a copy, which takes well under a millisecond and keeps the
    publisher free of per-URL state. ``endpoint_url`` is the absolute URL of the endpoint
    without query string, e.g. ``https://xds.example.fr/xds/registry``.
    """

    def __init__(self, wsdl_dir: Path, schema_dir: Path) -> None:
        self._wsdls = _load(wsdl_dir, _WSDL_NAME)
        self._schemas = _load(schema_dir, _XSD_NAME)

    @property
    def wsdl_names(self) -> frozenset[str]:
        """The WSDL file names this publisher can serve."""
        return frozenset(self._wsdls)

    @property
    def xsd_names(self) -> frozenset[str]:
        """The schema file names this publisher serves at ``?xsd=``."""
        return frozenset(self._schemas)

    def wsdl(self, name: str, endpoint_url: str) -> bytes:
        """WSDL ``name`` with imports pointing at ``endpoint_url?xsd=…`` and its service
        address set to ``endpoint_url``.

        ``name`` comes from the server's own endpoint table, never from the request, so an
        unknown name is a configuration error: :class:`FileNotFoundError`.
        """
        raw = self._wsdls.get(name)
        if raw is None:
            raise FileNotFoundError(f"no WSDL named {name!r}")
        return self._rewrite(raw, endpoint_url, set_address=True)

    def xsd(self, name: str, endpoint_url: str) -> bytes | None:
        """Schema ``name`` with its own imports rewritten like :meth:`wsdl`'s, or ``None`` if
        ``name`` is not the plain file name of one of our schemas (the caller answers 404)."""
        raw = self._schemas.get(name) if _XSD_NAME.fullmatch(name) else None
        if raw is None:
            return None
        return self._rewrite(raw, endpoint_url, set_address=False)

    @staticmethod
    def _rewrite(raw: bytes, endpoint_url: str, *, set_address: bool) -> bytes:
        root = etree.fromstring(raw, _parser())
        for element in root.iter(*_REFERENCES):
            attribute = _REFERENCES[element.tag]
            location = element.get(attribute)
            if location:
                element.set(attribute, f"{endpoint_url}?xsd={_file_name(location)}")
        if set_address:
            for element in root.iter(*_ADDRESSES):
                element.set("location", endpoint_url)
        return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


def _file_name(location: str) -> str:
    """Last path segment of a reference: ``../schemas/rim.xsd`` -> ``rim.xsd``."""
    return posixpath.basename(urlsplit(location).path)
