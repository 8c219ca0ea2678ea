"""Property-based fuzzing of the two parsers that see untrusted bytes first.

Property: whatever arrives, the ebRIM parser and validation answer XDS errors (or an
XdsFailure), and the MTOM reader answers parts or a SOAP fault; never another exception, never
a hang (hypothesis's deadline), and a refused body leaves no spooled file behind.

Inputs are both random and mutations of a valid message, because purely random bytes rarely get
past the first check. Example counts are bounded to keep the default run short.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from dmp_xds.errors import SoapFault, XdsError, XdsFailure
from dmp_xds.metadata.ebrim import parse_submission
from dmp_xds.metadata.validation import validate_submission
from dmp_xds.soap.envelope import Limits
from dmp_xds.soap.mtom import read_multipart
from tests.fixtures.metadata import Doc, submit_objects_request

FUZZ = settings(
    max_examples=100,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,  # no .hypothesis folder in the working tree
)
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
TAGS = [
    "RegistryObjectList",
    "RegistryPackage",
    "ExtrinsicObject",
    "Classification",
    "ExternalIdentifier",
    "Association",
    "ObjectRef",
    "Slot",
    "ValueList",
    "Value",
    "Name",
    "Description",
    "LocalizedString",
]
ATTRIBUTES = [
    "id",
    "lid",
    "objectType",
    "mimeType",
    "classificationScheme",
    "classificationNode",
    "classifiedObject",
    "nodeRepresentation",
    "identificationScheme",
    "registryObject",
    "value",
    "name",
    "associationType",
    "sourceObject",
    "targetObject",
    "status",
]
VALUES = st.one_of(
    st.sampled_from(
        [
            "SubmissionSet01",
            "Document01",
            "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1",
            "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd",
            "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446",
            "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember",
            "urn:ihe:iti:2007:AssociationType:RPLC",
            "1234^^^&1.2.250.1.213.1.4.10&ISO",
            "20260115093000",
            "",
        ]
    ),
    st.text(max_size=40).map(lambda s: "".join(c for c in s if c.isprintable())),
)


def _check_submission(request: etree._Element) -> None:
    try:
        sub, errors = parse_submission(request)
        for registry_side in (False, True):
            errors += validate_submission(copy.deepcopy(sub), registry_side=registry_side)
    except XdsFailure as failure:
        errors = failure.errors
    assert all(isinstance(e, XdsError) for e in errors)


@st.composite
def ebrim_trees(draw: st.DrawFn, depth: int = 0) -> etree._Element:
    tag = draw(st.sampled_from(TAGS))
    element = etree.Element(f"{{{RIM}}}{tag}")
    for name in draw(st.lists(st.sampled_from(ATTRIBUTES), max_size=4, unique=True)):
        element.set(name, draw(VALUES))
    if draw(st.booleans()):
        element.text = draw(VALUES)
    if depth < 3:
        for child in draw(st.lists(ebrim_trees(depth + 1), max_size=4)):
            element.append(child)
    return element


@FUZZ
@given(st.lists(ebrim_trees(), max_size=6))
def test_random_ebrim_gives_errors_not_exceptions(objects: list[etree._Element]) -> None:
    request = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, None: RIM})
    object_list = etree.SubElement(request, f"{{{RIM}}}RegistryObjectList")
    object_list.extend(objects)
    _check_submission(request)


VALID = submit_objects_request(
    "1234567890123^^^&1.2.250.1.213.1.4.10&ISO", [Doc(b"a"), Doc(b"b")], registry_side=True
)


@FUZZ
@given(st.data())
def test_mutated_ebrim_gives_errors_not_exceptions(data: st.DataObject) -> None:
    request = copy.deepcopy(VALID)
    elements = list(request.iter())
    for _ in range(data.draw(st.integers(1, 6))):
        target = data.draw(st.sampled_from(elements))
        action = data.draw(st.sampled_from(["drop", "attr", "text", "dup", "clear"]))
        parent = target.getparent()
        if action == "drop" and parent is not None:
            parent.remove(target)
        elif action == "attr":
            target.set(data.draw(st.sampled_from(ATTRIBUTES)), data.draw(VALUES))
        elif action == "text":
            target.text = data.draw(VALUES)
        elif action == "dup" and parent is not None:
            parent.append(copy.deepcopy(target))
        elif action == "clear":
            target.attrib.clear()
        elements = list(request.iter())
    _check_submission(request)


LIMITS = Limits(max_body_bytes=1 << 20, max_xml_bytes=1 << 18, max_attachments=20)
ROOT = (
    b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>'
    b'<x><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:a@b"/></x>'
    b"</s:Body></s:Envelope>"
)
VALID_MTOM = (
    b'--B0\r\nContent-Type: application/xop+xml; type="application/soap+xml"\r\n'
    b"Content-ID: <root>\r\n\r\n" + ROOT + b"\r\n--B0\r\nContent-Type: application/octet-stream"
    b"\r\nContent-ID: <a@b>\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\r\n--\xff\r\n"
    b"--B0--\r\n"
)
CONTENT_TYPES = st.one_of(
    st.just('multipart/related; boundary="B0"; type="application/xop+xml"; start="<root>"'),
    st.just("multipart/related; boundary=B0"),
    st.text(max_size=80),
)


def _check_multipart(body: bytes, content_type: str, declared: int | None, spool: Path) -> None:
    try:
        _root, _ctype, parts = read_multipart(
            io.BytesIO(body), content_type, declared, spool, LIMITS
        )
    except SoapFault:
        assert not list(spool.iterdir()), "refused body left spooled files"
        return
    for part in parts.values():
        part.path.unlink()


@FUZZ
@given(st.binary(max_size=2000), CONTENT_TYPES, st.booleans())
def test_random_multipart_gives_a_fault_not_an_exception(
    tmp_path: Path, body: bytes, content_type: str, with_length: bool
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    _check_multipart(body, content_type, len(body) if with_length else None, spool)


@FUZZ
@given(st.data())
def test_mutated_multipart_gives_a_fault_not_an_exception(
    tmp_path: Path, data: st.DataObject
) -> None:
    body = bytearray(VALID_MTOM)
    for _ in range(data.draw(st.integers(1, 5))):
        at = data.draw(st.integers(0, max(0, len(body) - 1)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if action == "flip" and body:
            body[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del body[at : at + data.draw(st.integers(1, 40))]
        elif action == "insert":
            body[at:at] = data.draw(
                st.sampled_from([b"\r\n", b"--B0", b"--B0--\r\n", b"Content-ID: <a@b>\r\n", b"\0"])
            )
        else:
            del body[at:]
    declared = data.draw(st.sampled_from([None, len(body), len(body) + 10, max(0, len(body) - 10)]))
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    _check_multipart(bytes(body), data.draw(CONTENT_TYPES), declared, spool)
