"""Our published WSDLs (wsdl/) and their publisher (dmp_xds.soap.wsdl).

The interop check: zeep, a mainstream SOAP client, loads each WSDL over HTTP from a tiny WSGI
server that answers ``?wsdl`` and ``?xsd=`` with :class:`WsdlPublisher` output, so every
rewritten reference has to resolve for real.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import zeep
from lxml import etree

from dmp_xds.metadata.vocabulary import response_action
from dmp_xds.metadata.xsd import payload_errors
from dmp_xds.namespaces import SOAP12, WSA, WSU
from dmp_xds.resources import resource_dir
from dmp_xds.soap.wsdl import WsdlPublisher

REGISTRY_WSDL = "XDS.b_DocumentRegistry.wsdl"
REPOSITORY_WSDL = "XDS.b_DocumentRepository.wsdl"
ENDPOINTS = {"/xds/registry": REGISTRY_WSDL, "/xds/repository": REPOSITORY_WSDL}

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
SOAP12_BINDING = "http://schemas.xmlsoap.org/wsdl/soap12/"
WSAM = "http://www.w3.org/2007/05/addressing/metadata"
WSAW = "http://www.w3.org/2006/05/addressing/wsdl"
WSP = "http://www.w3.org/ns/ws-policy"
WSOMA = "http://schemas.xmlsoap.org/ws/2004/09/policy/optimizedmimeserialization"

REGISTRY_ACTIONS = {
    "DocumentRegistry_RegistryStoredQuery": "urn:ihe:iti:2007:RegistryStoredQuery",
    "DocumentRegistry_RegisterDocumentSet-b": "urn:ihe:iti:2007:RegisterDocumentSet-b",
    "DocumentRegistry_UpdateDocumentSet": "urn:ihe:iti:2010:UpdateDocumentSet",
    "DocumentRegistry_DeleteDocumentSet": "urn:ihe:iti:2010:DeleteDocumentSet",
}
REPOSITORY_ACTIONS = {
    "DocumentRepository_ProvideAndRegisterDocumentSet-b": (
        "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
    ),
    "DocumentRepository_RetrieveDocumentSet": "urn:ihe:iti:2007:RetrieveDocumentSet",
}
INPUT_ELEMENTS = {
    "DocumentRegistry_RegistryStoredQuery": "query:AdhocQueryRequest",
    "DocumentRegistry_RegisterDocumentSet-b": "lcm:SubmitObjectsRequest",
    "DocumentRegistry_UpdateDocumentSet": "lcm:SubmitObjectsRequest",
    "DocumentRegistry_DeleteDocumentSet": "lcm:RemoveObjectsRequest",
    "DocumentRepository_ProvideAndRegisterDocumentSet-b": (
        "ihe:ProvideAndRegisterDocumentSetRequest"
    ),
    "DocumentRepository_RetrieveDocumentSet": "ihe:RetrieveDocumentSetRequest",
}


@pytest.fixture(scope="module")
def publisher() -> WsdlPublisher:
    return WsdlPublisher(resource_dir("wsdl"), resource_dir("schemas"))


# --- a tiny server publishing them ----------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Server:
    base: str
    requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def server(publisher: WsdlPublisher) -> Iterator[Server]:
    served = Server(base="")

    def app(environ: dict, start_response) -> Iterable[bytes]:  # type: ignore[no-untyped-def]
        path = environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        served.requests.append(f"{path}?{query}")
        endpoint = f"http://{environ['HTTP_HOST']}{path}"
        body: bytes | None = None
        if path in ENDPOINTS and query == "wsdl":
            body = publisher.wsdl(ENDPOINTS[path], endpoint)
        elif path in ENDPOINTS and query.startswith("xsd="):
            names = parse_qs(query).get("xsd", [""])
            body = publisher.xsd(names[0], endpoint)
        if body is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8")])
        return [body]

    httpd: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    served.base = f"http://127.0.0.1:{httpd.server_port}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def zeep_client(url: str) -> zeep.Client:
    transport = zeep.Transport(timeout=10, operation_timeout=10)
    return zeep.Client(
        url, transport=transport, settings=zeep.Settings(strict=False, raw_response=True)
    )


def operations(client: zeep.Client) -> dict[str, object]:
    (service,) = client.wsdl.services.values()
    (port,) = service.ports.values()
    return dict(port.binding._operations)


# --- zeep over HTTP -------------------------------------------------------------------------------


def test_zeep_loads_the_registry_wsdl_over_http(server: Server) -> None:
    url = f"{server.base}/xds/registry"
    client = zeep_client(f"{url}?wsdl")
    ops = operations(client)
    assert set(ops) == set(REGISTRY_ACTIONS)
    for name, action in REGISTRY_ACTIONS.items():
        assert ops[name].abstract.wsa_action == action  # type: ignore[attr-defined]
        assert ops[name].soapaction == action  # type: ignore[attr-defined]
    (service,) = client.wsdl.services.values()
    (port,) = service.ports.values()
    assert port.binding_options["address"] == url
    fetched = {r for r in server.requests if r.startswith("/xds/registry?xsd=")}
    assert {f"/xds/registry?xsd={n}.xsd" for n in ("rim", "rs", "lcm", "query", "xml")} <= fetched


def test_zeep_loads_the_repository_wsdl_over_http(server: Server) -> None:
    url = f"{server.base}/xds/repository"
    client = zeep_client(f"{url}?wsdl")
    ops = operations(client)
    assert set(ops) == set(REPOSITORY_ACTIONS)
    for name, action in REPOSITORY_ACTIONS.items():
        assert ops[name].abstract.wsa_action == action  # type: ignore[attr-defined]
    fetched = {r for r in server.requests if r.startswith("/xds/repository?xsd=")}
    assert "/xds/repository?xsd=xdsb.xsd" in fetched


def test_zeep_builds_a_stored_query_our_schemas_accept(server: Server) -> None:
    url = f"{server.base}/xds/registry"
    client = zeep_client(f"{url}?wsdl")
    envelope = client.create_message(
        client.service,
        "DocumentRegistry_RegistryStoredQuery",
        ResponseOption={"returnType": "LeafClass", "returnComposedObjects": True},
        AdhocQuery={
            "id": "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d",
            "Slot": [
                {
                    "name": "$XDSDocumentEntryPatientId",
                    "ValueList": {"Value": ["'248000000000042^^^&1.2.250.1.213.1.4.10&ISO^NH'"]},
                },
                {
                    "name": "$XDSDocumentEntryStatus",
                    "ValueList": {
                        "Value": ["('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')"]
                    },
                },
            ],
        },
    )
    assert envelope.tag == f"{{{SOAP12}}}Envelope"
    header = envelope.find(f"{{{SOAP12}}}Header")
    assert header.findtext(f"{{{WSA}}}Action") == "urn:ihe:iti:2007:RegistryStoredQuery"
    assert header.findtext(f"{{{WSA}}}To") == url
    (payload,) = envelope.find(f"{{{SOAP12}}}Body")
    assert etree.QName(payload).localname == "AdhocQueryRequest"
    assert len(payload.findall(".//{*}Slot")) == 2
    assert payload_errors(payload) == []


def test_zeep_builds_a_retrieve_request_our_schemas_accept(server: Server) -> None:
    client = zeep_client(f"{server.base}/xds/repository?wsdl")
    envelope = client.create_message(
        client.service,
        "DocumentRepository_RetrieveDocumentSet",
        DocumentRequest=[
            {
                "RepositoryUniqueId": "1.2.250.1.999.1.1.1",
                "DocumentUniqueId": "1.2.250.1.999.1.3.1",
            },
        ],
    )
    header = envelope.find(f"{{{SOAP12}}}Header")
    assert header.findtext(f"{{{WSA}}}Action") == "urn:ihe:iti:2007:RetrieveDocumentSet"
    (payload,) = envelope.find(f"{{{SOAP12}}}Body")
    assert payload_errors(payload) == []


def test_unknown_schema_is_404(server: Server) -> None:
    import requests

    for name in ("../schemas/rim.xsd", "..%2Frim.xsd", "nope.xsd"):
        response = requests.get(f"{server.base}/xds/registry?xsd={name}", timeout=5)
        assert response.status_code == 404


# --- the WSDL contents ----------------------------------------------------------------------------


def parsed(publisher: WsdlPublisher, name: str, url: str) -> etree._Element:
    return etree.fromstring(publisher.wsdl(name, url))


@pytest.mark.parametrize(
    ("name", "actions"), [(REGISTRY_WSDL, REGISTRY_ACTIONS), (REPOSITORY_WSDL, REPOSITORY_ACTIONS)]
)
def test_every_operation_declares_its_actions_and_body(
    publisher: WsdlPublisher, name: str, actions: dict[str, str]
) -> None:
    root = parsed(publisher, name, "http://h/x")
    messages = {m.get("name"): m for m in root.iterfind(f"{{{WSDL_NS}}}message")}
    port_type = root.find(f"{{{WSDL_NS}}}portType")
    seen = {}
    for op in port_type.iterfind(f"{{{WSDL_NS}}}operation"):
        op_name = op.get("name")
        inp, out = op.find(f"{{{WSDL_NS}}}input"), op.find(f"{{{WSDL_NS}}}output")
        seen[op_name] = inp.get(f"{{{WSAM}}}Action")
        # The answer's action is the server's (ITI-57: the DMP's "-Response" spelling).
        assert out.get(f"{{{WSAM}}}Action") == response_action(actions[op_name])
        part = messages[inp.get("message").split(":")[1]].find(f"{{{WSDL_NS}}}part")
        assert part.get("element") == INPUT_ELEMENTS[op_name]
        out_part = messages[out.get("message").split(":")[1]].find(f"{{{WSDL_NS}}}part")
        expected_out = {
            "DocumentRegistry_RegistryStoredQuery": "query:AdhocQueryResponse",
            "DocumentRepository_RetrieveDocumentSet": "ihe:RetrieveDocumentSetResponse",
        }.get(op_name, "rs:RegistryResponse")
        assert out_part.get("element") == expected_out
    assert seen == actions


@pytest.mark.parametrize(("name", "mtom"), [(REGISTRY_WSDL, False), (REPOSITORY_WSDL, True)])
def test_binding_is_soap12_literal_with_addressing(
    publisher: WsdlPublisher, name: str, mtom: bool
) -> None:
    root = parsed(publisher, name, "http://h/x")
    binding = root.find(f"{{{WSDL_NS}}}binding")
    assert binding.find(f"{{{SOAP12_BINDING}}}binding").get("style") == "document"
    assert binding.find(f"{{{WSAW}}}UsingAddressing") is not None
    for body in binding.iter(f"{{{SOAP12_BINDING}}}body"):
        assert body.get("use") == "literal"
    reference = binding.find(f"{{{WSP}}}PolicyReference").get("URI")
    policies = {p.get(f"{{{WSU}}}Id"): p for p in root.iterfind(f"{{{WSP}}}Policy")}
    policy = policies[reference.lstrip("#")]
    assert policy.find(f"{{{WSAM}}}Addressing") is not None
    assert (policy.find(f"{{{WSOMA}}}OptimizedMimeSerialization") is not None) is mtom


@pytest.mark.parametrize("name", [REGISTRY_WSDL, REPOSITORY_WSDL])
def test_source_wsdl_imports_our_schemas_by_relative_path(name: str) -> None:
    root = etree.parse(str(resource_dir("wsdl") / name)).getroot()
    locations = [i.get("schemaLocation") for i in root.iter(f"{{{XSD_NS}}}import")]
    assert locations and all(loc.startswith("../schemas/") for loc in locations)
    for location in locations:
        assert (resource_dir("wsdl") / location).is_file()


# --- rewriting ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [REGISTRY_WSDL, REPOSITORY_WSDL])
def test_wsdl_references_point_at_the_endpoint(publisher: WsdlPublisher, name: str) -> None:
    url = "https://xds.example.fr:8443/xds/endpoint"
    text = publisher.wsdl(name, url)
    assert b"../schemas" not in text
    root = etree.fromstring(text)
    locations = [i.get("schemaLocation") for i in root.iter(f"{{{XSD_NS}}}import")]
    assert locations
    for location in locations:
        prefix, _, file_name = location.partition("?xsd=")
        assert prefix == url
        assert publisher.xsd(file_name, url) is not None
    addresses = [a.get("location") for a in root.iter(f"{{{SOAP12_BINDING}}}address")]
    assert addresses == [url]


def test_xsd_imports_point_at_the_endpoint(publisher: WsdlPublisher) -> None:
    url = "http://h/xds/repository"
    for name in publisher.xsd_names:
        root = etree.fromstring(publisher.xsd(name, url) or b"")
        for node in root.iter(f"{{{XSD_NS}}}import"):
            assert node.get("schemaLocation").startswith(f"{url}?xsd=")


def test_hostile_endpoint_url_is_escaped(publisher: WsdlPublisher) -> None:
    url = 'http://h/x"><evil/><a b="'
    root = etree.fromstring(publisher.wsdl(REGISTRY_WSDL, url))
    assert not list(root.iter("evil"))
    assert [a.get("location") for a in root.iter(f"{{{SOAP12_BINDING}}}address")] == [url]


def test_unknown_wsdl_is_a_configuration_error(publisher: WsdlPublisher) -> None:
    with pytest.raises(FileNotFoundError):
        publisher.wsdl("../wsdl/XDS.b_DocumentRegistry.wsdl", "http://h/x")
    with pytest.raises(FileNotFoundError):
        publisher.wsdl("Nothing.wsdl", "http://h/x")


@pytest.mark.parametrize(
    "name",
    [
        "../schemas/rim.xsd",
        "../../pyproject.toml",
        "..%2Frim.xsd",
        "..\\rim.xsd",
        "/etc/passwd",
        "/work/main/schemas/rim.xsd",
        "rim.xsd/../rim.xsd",
        "./rim.xsd",
        "rim.xsd\x00",
        "rim.xsd\n",
        "",
        ".",
        "..",
        "..xsd",
        "nothing.xsd",
        "RIM.XSD",
        "XDS.b_DocumentRegistry.wsdl",
        "file:rim.xsd",
    ],
)
def test_xsd_refuses_anything_but_our_file_names(publisher: WsdlPublisher, name: str) -> None:
    assert publisher.xsd(name, "http://h/x") is None


def test_publisher_serves_only_matching_files(tmp_path: Path) -> None:
    wsdl_dir, schema_dir = tmp_path / "wsdl", tmp_path / "schemas"
    wsdl_dir.mkdir()
    schema_dir.mkdir()
    (schema_dir / "notes.txt").write_text("not a schema")
    (schema_dir / "sub").mkdir()
    (schema_dir / "sub" / "inner.xsd").write_text("<x/>")
    (schema_dir / "a.xsd").write_text(
        f'<xs:schema xmlns:xs="{XSD_NS}"><xs:include schemaLocation="sub/b.xsd"/>'
        '<!-- schemaLocation="../keep.xsd" --></xs:schema>'
    )
    (wsdl_dir / "S.wsdl").write_text(
        f'<definitions xmlns="{WSDL_NS}" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/">'
        '<import namespace="urn:x" location="http://elsewhere/other.xsd?v=1"/>'
        '<service name="s"><port name="p" binding="b"><soap:address location="http://old/"/>'
        "</port></service></definitions>"
    )
    publisher = WsdlPublisher(wsdl_dir, schema_dir)
    assert publisher.xsd_names == {"a.xsd"}
    assert publisher.xsd("notes.txt", "http://h/e") is None
    assert publisher.xsd("inner.xsd", "http://h/e") is None
    schema = publisher.xsd("a.xsd", "http://h/e") or b""
    assert b'schemaLocation="http://h/e?xsd=b.xsd"' in schema
    assert b'<!-- schemaLocation="../keep.xsd" -->' in schema
    wsdl = publisher.wsdl("S.wsdl", "http://h/e")
    assert b'location="http://h/e?xsd=other.xsd"' in wsdl
    assert b'<soap:address location="http://h/e"/>' in wsdl


def test_publisher_refuses_entities(tmp_path: Path) -> None:
    """The hardened parser: a DOCTYPE with an external entity is not expanded."""
    (tmp_path / "w").mkdir()
    (tmp_path / "s").mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    (tmp_path / "s" / "e.xsd").write_text(
        f'<!DOCTYPE s [<!ENTITY x SYSTEM "file://{secret}">]>'
        f'<xs:schema xmlns:xs="{XSD_NS}"><xs:annotation><xs:documentation>&x;'
        "</xs:documentation></xs:annotation></xs:schema>"
    )
    publisher = WsdlPublisher(tmp_path / "w", tmp_path / "s")
    assert b"TOP-SECRET" not in (publisher.xsd("e.xsd", "http://h/e") or b"")
