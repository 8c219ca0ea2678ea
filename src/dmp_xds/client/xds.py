"""XDS.b transactions on top of :class:`SoapClient`: ITI-41, -42, -57, -62, -18 and -43.

Builders take ebRIM the caller already has (the tests build theirs from fixture files, the CLI
from the domain model) and only add the transaction wrapping, so the client never hides what is
sent. A SOAP fault is raised as :class:`SoapFaultError`: an XDS call that ends in a fault has no
registry status to report, and a fault silently turned into a result is easy to miss.
"""

from __future__ import annotations

import base64
import copy
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from ..namespaces import LCM, QUERY, RIM, RS, XDSB, XOP
from ..soap.mtom import xop_include
from .transport import ClientError, Fault, SoapClient, SoapReply

REPOSITORY_PATH = "/xds/repository"
REGISTRY_PATH = "/xds/registry"

ACTION_PNR = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ACTION_REGISTER = "urn:ihe:iti:2007:RegisterDocumentSet-b"
ACTION_STORED_QUERY = "urn:ihe:iti:2007:RegistryStoredQuery"
ACTION_RETRIEVE = "urn:ihe:iti:2007:RetrieveDocumentSet"
ACTION_UPDATE = "urn:ihe:iti:2010:UpdateDocumentSet"
ACTION_DELETE = "urn:ihe:iti:2010:DeleteDocumentSet"
RESPONSE_ACTIONS = {
    ACTION_PNR: "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse",
    ACTION_REGISTER: "urn:ihe:iti:2007:RegisterDocumentSet-bResponse",
    ACTION_STORED_QUERY: "urn:ihe:iti:2007:RegistryStoredQueryResponse",
    ACTION_RETRIEVE: "urn:ihe:iti:2007:RetrieveDocumentSetResponse",
    ACTION_UPDATE: "urn:ihe:iti:2010:UpdateDocumentSet-Response",  # the DMP's spelling
    ACTION_DELETE: "urn:ihe:iti:2010:DeleteDocumentSetResponse",
}

_X = f"{{{XDSB}}}"
_RIM = f"{{{RIM}}}"
_RS = f"{{{RS}}}"

QueryValue = str | int | Sequence[str | int] | list[Sequence[str | int]]


class SoapFaultError(Exception):
    """The server answered an XDS transaction with a SOAP fault."""

    def __init__(self, reply: SoapReply) -> None:
        assert reply.fault is not None
        fault = reply.fault
        super().__init__(f"SOAP fault {fault.code} {fault.subcode or ''}: {fault.reason}")
        self.reply = reply
        self.fault: Fault = fault


@dataclass
class RegistryErrorInfo:
    code: str
    context: str
    location: str
    severity: str  # short form: "Error" or "Warning"


@dataclass
class RegistryResult:
    status: str  # short form: "Success", "Failure", "PartialSuccess"
    errors: list[RegistryErrorInfo]
    reply: SoapReply

    @property
    def error_codes(self) -> list[str]:
        return [e.code for e in self.errors]


@dataclass
class QueryResult(RegistryResult):
    objects: list[etree._Element] = field(default_factory=list)


@dataclass
class RetrievedDocument:
    repository_uid: str
    document_uid: str
    mime_type: str
    content: bytes
    home_community_id: str | None = None


@dataclass
class RetrieveResult(RegistryResult):
    documents: list[RetrievedDocument] = field(default_factory=list)


def _short(urn: str) -> str:
    return urn.rsplit(":", 1)[-1]


def parse_registry_response(element: etree._Element) -> tuple[str, list[RegistryErrorInfo]]:
    """Status (short form) and errors of a RegistryResponse, AdhocQueryResponse or
    RetrieveDocumentSetResponse (whose status sits in its nested RegistryResponse)."""
    if element.tag == _X + "RetrieveDocumentSetResponse":
        nested = element.find(_RS + "RegistryResponse")
        if nested is None:
            raise ClientError("RetrieveDocumentSetResponse without a RegistryResponse")
        element = nested
    errors = [
        RegistryErrorInfo(
            code=error.get("errorCode", ""),
            context=error.get("codeContext", ""),
            location=error.get("location", ""),
            severity=_short(error.get("severity", "")),
        )
        for error in element.iterfind(f"{_RS}RegistryErrorList/{_RS}RegistryError")
    ]
    return _short(element.get("status", "")), errors


def query_value(value: str | int) -> str:
    """One ebRS query parameter value: strings quoted with inner quotes doubled, ints bare."""
    if isinstance(value, bool):
        raise TypeError("query parameter values are strings or integers")
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def slot_values(value: QueryValue) -> list[str]:
    """The Value texts of one query Slot.

    ``'x'`` or ``7`` -> one value; ``["a", "b"]`` -> one value ``('a','b')`` (OR);
    ``[["a", "b"], ["c"]]`` -> two values ``('a','b')`` and ``('c')`` (AND of ORs).
    """
    if isinstance(value, str | int):
        return [query_value(value)]
    items = list(value)
    if items and all(not isinstance(i, str | int) for i in items):
        return ["(" + ",".join(query_value(v) for v in group) + ")" for group in items]
    if any(not isinstance(i, str | int) for i in items):
        raise TypeError("mix of values and value lists in one query parameter")
    return ["(" + ",".join(query_value(v) for v in items) + ")"]  # type: ignore[arg-type]


def adhoc_query_request(
    query_id: str,
    params: Mapping[str, QueryValue],
    return_type: str = "LeafClass",
    home_community_id: str | None = None,
) -> etree._Element:
    request = etree.Element(f"{{{QUERY}}}AdhocQueryRequest", nsmap={"query": QUERY, "rim": RIM})
    etree.SubElement(
        request,
        f"{{{QUERY}}}ResponseOption",
        returnType=return_type,
        returnComposedObjects="true",
    )
    query = etree.SubElement(request, _RIM + "AdhocQuery", id=query_id)
    if home_community_id:
        query.set("home", home_community_id)
    for name, value in params.items():
        slot = etree.SubElement(query, _RIM + "Slot", name=name)
        values = etree.SubElement(slot, _RIM + "ValueList")
        for text in slot_values(value):
            etree.SubElement(values, _RIM + "Value").text = text
    return request


def remove_objects_request(entry_uuids: Sequence[str]) -> etree._Element:
    """An ITI-62 ``lcm:RemoveObjectsRequest`` naming ``entry_uuids`` in an ObjectRefList."""
    request = etree.Element(f"{{{LCM}}}RemoveObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    refs = etree.SubElement(request, _RIM + "ObjectRefList")
    for entry_uuid in entry_uuids:
        etree.SubElement(refs, _RIM + "ObjectRef", id=entry_uuid)
    return request


def retrieve_request(
    items: Sequence[tuple[str, str]], home_community_id: str | None = None
) -> etree._Element:
    request = etree.Element(_X + "RetrieveDocumentSetRequest", nsmap={"xdsb": XDSB})
    for repository_uid, document_uid in items:
        item = etree.SubElement(request, _X + "DocumentRequest")
        if home_community_id:
            etree.SubElement(item, _X + "HomeCommunityId").text = home_community_id
        etree.SubElement(item, _X + "RepositoryUniqueId").text = repository_uid
        etree.SubElement(item, _X + "DocumentUniqueId").text = document_uid
    return request


def _content(data: bytes | Path) -> bytes:
    return data.read_bytes() if isinstance(data, Path) else data


class XdsClient:
    """ITI-41/42/18/43 against one dmp-xds server (or any XDS.b actor at the same paths).

    ``header_factory`` is called once per request for extra SOAP header blocks (a fresh
    WS-Security header with its VIHF assertion); other keyword arguments go to
    :class:`SoapClient`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        header_factory: Callable[[], Sequence[etree._Element]] | None = None,
        repository_path: str = REPOSITORY_PATH,
        registry_path: str = REGISTRY_PATH,
        **kw: Any,
    ) -> None:
        self.soap = SoapClient(base_url, **kw)
        self.header_factory = header_factory
        self.repository_path = repository_path
        self.registry_path = registry_path

    def _call(self, path: str, action: str, payload: etree._Element, **kw: Any) -> SoapReply:
        headers = self.header_factory() if self.header_factory else ()
        reply = self.soap.call(path, action, payload, headers=headers, **kw)
        if reply.fault is not None:
            raise SoapFaultError(reply)
        if reply.payload is None:
            raise ClientError("response without a payload", reply.http_status)
        return reply

    def provide_and_register(
        self,
        submit_objects_request: etree._Element,
        documents: Mapping[str, bytes | Path],
        *,
        mtom: bool = True,
    ) -> RegistryResult:
        """ITI-41: the submission plus one xdsb:Document per entry of ``documents`` (by the
        DocumentEntry id), as MTOM attachments or, with ``mtom=False``, inline base64."""
        request = etree.Element(
            _X + "ProvideAndRegisterDocumentSetRequest", nsmap={"xdsb": XDSB, "xop": XOP}
        )
        request.append(copy.deepcopy(submit_objects_request))
        attachments: list[tuple[str, str, bytes | Path]] = []
        for number, (doc_id, data) in enumerate(documents.items(), start=1):
            document = etree.SubElement(request, _X + "Document", id=doc_id)
            if mtom:
                content_id = f"doc{number}.{uuid.uuid4().hex}@dmp-xds-client"
                xop_include(document, content_id)
                attachments.append((content_id, "application/octet-stream", data))
            else:
                document.text = base64.b64encode(_content(data)).decode("ascii")
        reply = self._call(
            self.repository_path, ACTION_PNR, request, attachments=attachments, mtom=mtom
        )
        status, errors = parse_registry_response(reply.payload)  # type: ignore[arg-type]
        return RegistryResult(status, errors, reply)

    def register(self, submit_objects_request: etree._Element) -> RegistryResult:
        """ITI-42: register metadata directly with the registry."""
        return self._submit(ACTION_REGISTER, submit_objects_request)

    def update(self, submit_objects_request: etree._Element) -> RegistryResult:
        """ITI-57: new metadata versions and availability-status changes."""
        return self._submit(ACTION_UPDATE, submit_objects_request)

    def remove(self, remove_objects_request: etree._Element) -> RegistryResult:
        """ITI-62: remove the registry objects a RemoveObjectsRequest names (see
        :func:`remove_objects_request`)."""
        return self._submit(ACTION_DELETE, remove_objects_request)

    def _submit(self, action: str, submit_objects_request: etree._Element) -> RegistryResult:
        reply = self._call(self.registry_path, action, copy.deepcopy(submit_objects_request))
        status, errors = parse_registry_response(reply.payload)  # type: ignore[arg-type]
        return RegistryResult(status, errors, reply)

    def stored_query(
        self,
        query_id: str,
        params: Mapping[str, QueryValue],
        return_type: str = "LeafClass",
        *,
        home_community_id: str | None = None,
    ) -> QueryResult:
        """ITI-18; ``params`` encoding as in :func:`slot_values`."""
        request = adhoc_query_request(query_id, params, return_type, home_community_id)
        reply = self._call(self.registry_path, ACTION_STORED_QUERY, request)
        payload = reply.payload
        assert payload is not None
        status, errors = parse_registry_response(payload)
        object_list = payload.find(_RIM + "RegistryObjectList")
        objects = [] if object_list is None else [c for c in object_list if isinstance(c.tag, str)]
        return QueryResult(status, errors, reply, objects)

    def retrieve(
        self, items: Sequence[tuple[str, str]], home_community_id: str | None = None
    ) -> RetrieveResult:
        """ITI-43: ``items`` are (repositoryUniqueId, documentUniqueId) pairs."""
        request = retrieve_request(items, home_community_id)
        reply = self._call(self.repository_path, ACTION_RETRIEVE, request)
        payload = reply.payload
        assert payload is not None
        status, errors = parse_registry_response(payload)
        documents = []
        for response in payload.iterfind(_X + "DocumentResponse"):
            document = response.find(_X + "Document")
            content = reply.attachment_for(document) if document is not None else None
            if content is None:
                raise ClientError("DocumentResponse without its document", reply.http_status)
            documents.append(
                RetrievedDocument(
                    repository_uid=(response.findtext(_X + "RepositoryUniqueId") or "").strip(),
                    document_uid=(response.findtext(_X + "DocumentUniqueId") or "").strip(),
                    mime_type=(response.findtext(_X + "mimeType") or "").strip(),
                    content=content,
                    home_community_id=(response.findtext(_X + "HomeCommunityId") or "").strip()
                    or None,
                )
            )
        return RetrieveResult(status, errors, reply, documents)
