"""zeep, the mainstream Python SOAP client, loads the WSDLs the server publishes and runs a
stored query through them."""

from __future__ import annotations

import zeep
from lxml import etree
from zeep.transports import Transport

from dmp_xds.metadata import vocabulary as v
from tests.fixtures.metadata import Doc, submit_objects_request

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"


def test_zeep_loads_wsdls_and_runs_a_stored_query(server, client, patient_id, test_pki) -> None:
    doc = Doc(b"seen through zeep")
    result = client.provide_and_register(
        submit_objects_request(patient_id, [doc]), {"Document01": doc.content}
    )
    assert result.status == "Success"

    settings = zeep.Settings(strict=False, raw_response=True)
    transport = Transport(timeout=30)
    repository = zeep.Client(
        server.url + "/xds/repository?wsdl", settings=settings, transport=transport
    )
    assert repository.wsdl.services
    registry = zeep.Client(
        server.url + "/xds/registry?wsdl", settings=settings, transport=transport
    )
    slot = registry.get_type(f"{{{RIM}}}SlotType1")
    value_list = registry.get_type(f"{{{RIM}}}ValueListType")

    def param(name: str, value: str):
        return slot(name=name, ValueList=value_list(Value=[value]))

    service = next(iter(registry.wsdl.services.values()))
    port = next(iter(service.ports.values()))
    operation = next(
        name for name in port.binding._operations if "StoredQuery" in name or "Query" in name
    )
    response = getattr(registry.service, operation)(
        ResponseOption={"returnType": "LeafClass", "returnComposedObjects": True},
        AdhocQuery={
            "id": v.FIND_DOCUMENTS,
            "Slot": [
                param("$XDSDocumentEntryPatientId", f"'{patient_id}'"),
                param("$XDSDocumentEntryStatus", f"('{v.APPROVED}')"),
            ],
        },
        _soapheaders=test_pki.vihf_headers(
            patient_id, authentication_mode="INDIRECTE_RENFORCEE"
        )(),  # a signed VIHF, as every call needs
    )
    assert response.status_code == 200
    root = etree.fromstring(response.content)
    answer = root.find(".//{urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0}AdhocQueryResponse")
    assert answer is not None
    assert answer.get("status") == v.RESPONSE_SUCCESS
    objects = answer.findall(f"{{{RIM}}}RegistryObjectList/{{{RIM}}}ExtrinsicObject")
    assert len(objects) == 1
