"""Our XSDs (schemas/) and the payload validator built on them (dmp_xds.metadata.xsd).

The fixtures under tests/fixtures/xml/ are hand-written for this project: ``valid/`` holds one
example of every message we receive or send, ``invalid/`` one mistake each, ``xop/`` the MTOM
packaged form of a ProvideAndRegister request.
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

import pytest
from lxml import etree

from dmp_xds.metadata import xsd
from dmp_xds.metadata.xsd import MAX_MESSAGES, payload_errors
from dmp_xds.namespaces import LCM, RIM, SOAP12, XDSB, XOP
from dmp_xds.resources import resource_dir

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "xml"
VALID = sorted((FIXTURES / "valid").glob("*.xml"))
INVALID = sorted((FIXTURES / "invalid").glob("*.xml"))
SECRET = "DUPONT-SECRET"  # marker text some broken fixtures carry; must never be echoed back


def load(path: Path) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.parse(str(path), parser).getroot()


def xml(text: str) -> etree._Element:
    return etree.fromstring(text.encode())


def test_fixture_sets_are_present() -> None:
    assert len(VALID) >= 10
    assert len(INVALID) >= 5


# --- the schema files themselves -------------------------------------------------------------


def test_every_schema_compiles_on_its_own() -> None:
    for path in sorted(resource_dir("schemas").glob("*.xsd")):
        etree.XMLSchema(etree.parse(str(path)))


def test_driver_schema_imports_every_other_schema() -> None:
    """A schema added to the folder but not to all.xsd would silently never be used."""
    folder = resource_dir("schemas")
    driver = etree.parse(str(folder / "all.xsd")).getroot()
    imported = {node.get("schemaLocation") for node in driver}
    assert imported == {p.name for p in folder.glob("*.xsd")} - {"all.xsd"}


def test_schemas_never_reach_outside_their_folder() -> None:
    """Loading must need neither the network nor anything but sibling files."""
    for path in sorted(resource_dir("schemas").glob("*.xsd")):
        for node in etree.parse(str(path)).iter("{http://www.w3.org/2001/XMLSchema}import"):
            location = node.get("schemaLocation")
            assert location and "/" not in location and ":" not in location, (path.name, location)


# --- valid and invalid fixtures --------------------------------------------------------------


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_fixture_is_accepted(path: Path) -> None:
    assert payload_errors(load(path)) == []


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_is_rejected_without_echoing_content(path: Path) -> None:
    messages = payload_errors(load(path))
    assert messages
    for message in messages:
        assert message.startswith("line "), message
        assert SECRET not in message
        assert "DUPONT" not in message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("unknown_element", ["Element 'rim:Comment': This element is not expected"]),
        (
            "missing_required_attribute",
            [
                "Element 'rim:Slot': The attribute 'name' is required but missing.",
                "The attribute 'identificationScheme' is required but missing.",
            ],
        ),
        (
            "wrong_namespace",
            [
                "{urn:oasis:names:tc:ebxml-regrep:rim:xsd:2.1}RegistryObjectList",
                "Expected is one of ( rs:RequestSlotList, rim:RegistryObjectList )",
            ],
        ),
        ("wrong_order", ["Element 'rim:AdhocQuery': This element is not expected"]),
        ("value_too_long", ["[facet 'maxLength']", "length of '256'"]),
        ("bad_response_status", ["The attribute 'status' is required", "'errorCode'"]),
        ("retrieve_missing_repository", ["xdsb:RepositoryUniqueId"]),
        (
            "pnr_bad_base64",
            ["'…' is not a valid value of the atomic type 'xs:base64Binary'", "'id' is required"],
        ),
    ],
)
def test_invalid_fixture_messages_name_the_problem(name: str, expected: list[str]) -> None:
    text = "\n".join(payload_errors(load(FIXTURES / "invalid" / f"{name}.xml")))
    for fragment in expected:
        assert fragment in text


def test_messages_carry_line_and_path() -> None:
    (message,) = payload_errors(load(FIXTURES / "invalid" / "unknown_element.xml"))
    assert message.startswith(
        "line 9, /lcm:SubmitObjectsRequest/rim:RegistryObjectList/rim:ExtrinsicObject/rim:Comment: "
    )


def test_values_with_quotes_are_masked_whole() -> None:
    element = xml(
        f'<lcm:SubmitObjectsRequest xmlns:lcm="{LCM}" xmlns:rim="{RIM}"><rim:RegistryObjectList>'
        f'<rim:ExtrinsicObject id="a" isOpaque="DUPONT\' is not x \'MARIE"/>'
        "</rim:RegistryObjectList></lcm:SubmitObjectsRequest>"
    )
    (message,) = payload_errors(element)
    assert "DUPONT" not in message and "MARIE" not in message
    assert (
        "attribute 'isOpaque': '…' is not a valid value of the atomic type 'xs:boolean'" in message
    )


@pytest.mark.parametrize("unit", ["a: '", "x' is not 'y", "DUPONT "])
def test_huge_hostile_values_are_masked_quickly(unit: str) -> None:
    """libxml2 cuts messages at about 64 KB, possibly inside the quoted value: nothing of the
    value may survive, and masking must stay linear in the message length."""
    value = (unit * 200_000).replace("'", "&apos;")
    element = xml(
        f'<lcm:SubmitObjectsRequest xmlns:lcm="{LCM}" xmlns:rim="{RIM}"><rim:RegistryObjectList>'
        f'<rim:ExtrinsicObject id="a" isOpaque="{value}"/>'
        "</rim:RegistryObjectList></lcm:SubmitObjectsRequest>"
    )
    started = time.perf_counter()
    (message,) = payload_errors(element)
    assert time.perf_counter() - started < 0.5
    assert message.endswith("attribute 'isOpaque': '…'") or message.endswith(
        "'…' is not a valid value of the atomic type 'xs:boolean'."
    )
    assert len(message) < 400


def test_enumeration_messages_keep_the_allowed_values() -> None:
    element = xml(
        f'<q:AdhocQueryRequest xmlns:q="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0" '
        f'xmlns:rim="{RIM}"><q:ResponseOption returnType="DUPONT"/><rim:AdhocQuery id="x"/>'
        "</q:AdhocQueryRequest>"
    )
    (message,) = payload_errors(element)
    assert "DUPONT" not in message
    assert "{'ObjectRef', 'RegistryObject', 'LeafClass', 'LeafClassWithRepositoryItem'}" in message


def test_ebrim_classes_outside_xds_are_refused() -> None:
    """Deliberate scope: our rim.xsd only declares the registry objects XDS exchanges."""
    element = xml(
        f'<lcm:SubmitObjectsRequest xmlns:lcm="{LCM}" xmlns:rim="{RIM}"><rim:RegistryObjectList>'
        '<rim:ExternalLink id="a" externalURI="http://example.org/"/>'
        "</rim:RegistryObjectList></lcm:SubmitObjectsRequest>"
    )
    (message,) = payload_errors(element)
    assert "rim:ExternalLink" in message


def test_unknown_root_is_refused() -> None:
    (message,) = payload_errors(xml('<foo xmlns="urn:example"/>'))
    assert "No matching global declaration" in message


def test_substitution_group_accepts_every_xds_object_in_any_order() -> None:
    root = load(FIXTURES / "valid" / "register_one_document.xml")
    object_list = root[0]
    object_list[:] = list(reversed(object_list))
    object_list.append(
        etree.Element(f"{{{RIM}}}ObjectRef", id="urn:uuid:00000000-0000-4000-8000-0000000000aa")
    )
    assert payload_errors(root) == []


def test_payload_inside_a_soap_envelope() -> None:
    """The SOAP layer hands over the Body's child: line numbers stay those of the request."""
    payload = (FIXTURES / "valid" / "query_find_documents.xml").read_text().split("-->", 1)[1]
    broken = payload.replace("<query:ResponseOption", "<query:ResponseOptions")
    envelope = xml(
        f'<env:Envelope xmlns:env="{SOAP12}">\n<env:Header/>\n'
        f"<env:Body>{broken}</env:Body></env:Envelope>"
    )
    body_child = envelope.find(f"{{{SOAP12}}}Body")[0]
    (message,) = payload_errors(body_child)
    # Envelope line 1, Header 2, Body 3, AdhocQueryRequest 4 (its second line 5), the option 6.
    assert message.startswith("line 6, /query:AdhocQueryRequest/query:ResponseOptions: ")


def test_many_errors_are_capped() -> None:
    element = xml(
        f'<lcm:SubmitObjectsRequest xmlns:lcm="{LCM}" xmlns:rim="{RIM}"><rim:RegistryObjectList>'
        + '<rim:ExtrinsicObject isOpaque="maybe"/>' * 100
        + "</rim:RegistryObjectList></lcm:SubmitObjectsRequest>"
    )
    messages = payload_errors(element)
    assert len(messages) == MAX_MESSAGES + 1
    assert messages[-1] == f"... and {200 - MAX_MESSAGES} more schema errors"


# --- XOP-packaged documents --------------------------------------------------------------------


def test_xop_packaged_pnr_is_accepted_and_left_unchanged() -> None:
    root = load(FIXTURES / "xop" / "pnr_one_document.xml")
    before = etree.tostring(root)
    assert payload_errors(root) == []
    assert etree.tostring(root) == before


def test_xop_include_in_a_retrieve_response_is_accepted() -> None:
    root = load(FIXTURES / "valid" / "retrieve_response.xml")
    document = root.find(f"{{{XDSB}}}DocumentResponse/{{{XDSB}}}Document")
    document.text = None
    etree.SubElement(document, f"{{{XOP}}}Include", href="cid:doc1@example")
    assert payload_errors(root) == []


def _pnr_document(root: etree._Element) -> etree._Element:
    return root.find(f"{{{XDSB}}}Document")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("text", "an xop:Include must be the only content"),
        ("two", "an xop:Include must be the only content"),
        ("no-href", "The attribute 'href' is required"),
    ],
)
def test_malformed_xop_is_reported(change: str, expected: str) -> None:
    root = load(FIXTURES / "xop" / "pnr_one_document.xml")
    document = _pnr_document(root)
    include = document[0]
    if change == "text":
        include.tail = f"{SECRET} stray text"
    elif change == "two":
        document.append(copy.deepcopy(include))
    else:
        del include.attrib["href"]
    before = etree.tostring(root)
    messages = payload_errors(root)
    assert len(messages) == 1 and expected in messages[0]
    assert messages[0].startswith("line ")
    assert SECRET not in messages[0]
    assert etree.tostring(root) == before


def test_xop_message_path_starts_at_the_payload() -> None:
    """Our own XOP messages use the same line and path conventions as libxml2's."""
    payload = (FIXTURES / "xop" / "pnr_one_document.xml").read_text().split("-->", 1)[1]
    payload = payload.replace('href="cid:', 'hreff="cid:')
    envelope = xml(f'<e:Envelope xmlns:e="{SOAP12}"><e:Body>{payload}</e:Body></e:Envelope>')
    document = envelope.find(f".//{{{XDSB}}}Document")
    (message,) = payload_errors(envelope.find(f"{{{SOAP12}}}Body")[0])
    path = "/xdsb:ProvideAndRegisterDocumentSetRequest/xdsb:Document"
    assert message.startswith(f"line {document.sourceline}, {path}: ")


def test_xop_include_outside_a_document_is_refused() -> None:
    root = load(FIXTURES / "valid" / "query_find_documents.xml")
    value = root.find(f".//{{{RIM}}}Value")
    value.text = None
    etree.SubElement(value, f"{{{XOP}}}Include", href="cid:x@example")
    (message,) = payload_errors(root)
    assert "Element 'rim:Value': Element content is not allowed" in message


# --- size and threads --------------------------------------------------------------------------


def many_documents(count: int) -> etree._Element:
    """A SubmitObjectsRequest with ``count`` DocumentEntries (one SubmissionSet, one HasMember
    each), grown from the 1-document fixture. Also used to measure validation cost."""
    root = load(FIXTURES / "valid" / "register_one_document.xml")
    object_list = root[0]
    entry = object_list.find(f"{{{RIM}}}ExtrinsicObject")
    member = object_list.find(f"{{{RIM}}}Association")
    entry_id = entry.get("id")
    for number in range(1, count):
        new_id = f"urn:uuid:00000000-0000-4000-8000-{number:012d}"
        clone = copy.deepcopy(entry)
        for node in clone.iter():
            for key, value in node.attrib.items():
                if value == entry_id:
                    node.set(key, new_id)
                elif key == "id":
                    node.set(key, f"{value[:-6]}{number:06d}")
        association = copy.deepcopy(member)
        association.set("id", f"urn:uuid:10000000-0000-4000-8000-{number:012d}")
        association.set("targetObject", new_id)
        object_list.insert(number, clone)
        object_list.append(association)
    return root


def test_hundred_document_submission_validates() -> None:
    root = many_documents(100)
    assert len(root[0].findall(f"{{{RIM}}}ExtrinsicObject")) == 100
    assert payload_errors(root) == []


def test_each_thread_gets_its_own_schema() -> None:
    here = xsd.schema()
    assert xsd.schema() is here
    seen: list[etree.XMLSchema] = []
    thread = threading.Thread(target=lambda: seen.append(xsd.schema()))
    thread.start()
    thread.join()
    assert seen and seen[0] is not here


def test_concurrent_validation_keeps_errors_apart() -> None:
    good = load(FIXTURES / "valid" / "register_one_document.xml")
    bad_path = FIXTURES / "invalid" / "missing_required_attribute.xml"
    expected_bad = payload_errors(load(bad_path))
    failures: list[str] = []

    def work(index: int) -> None:
        tree = copy.deepcopy(good) if index % 2 else load(bad_path)
        for _ in range(30):
            result = payload_errors(tree)
            if result != ([] if index % 2 else expected_bad):
                failures.append(f"thread {index}: {result}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
