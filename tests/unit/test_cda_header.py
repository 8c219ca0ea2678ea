"""The streaming CDA header reader: what it picks from our fixtures, what it refuses, and that
memory stays flat on a large nonXMLBody."""

from __future__ import annotations

import base64
import tracemalloc
from pathlib import Path

import pytest

from dmp_xds.cda.header import InstanceId, NotWellFormed, read_header
from dmp_xds.cda.times import same_instant, ts_to_utc
from tests.fixtures.clinical_documents import KINDS, header_for, render
from tests.fixtures.metadata import new_patient_id

V3 = 'xmlns="urn:hl7-org:v3"'


def write(tmp_path: Path, data: bytes | str, name: str = "doc.xml") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_reads_every_fixture_header(tmp_path: Path, kind: str) -> None:
    pid = new_patient_id()
    header = header_for(kind, pid)
    got = read_header(write(tmp_path, render(kind, header)))
    assert got is not None
    matricule, oid = pid.split("^")[0], pid.split("&")[1]
    assert got.id == InstanceId(header.document_root)
    assert (got.code.code, got.code.code_system) == header.type_code
    assert got.effective_time == header.effective_time
    assert (got.confidentiality.code, got.confidentiality.code_system) == header.confidentiality
    assert got.language == "fr-FR"
    assert InstanceId(oid, matricule) in got.patient_ids
    assert got.author_ids == [InstanceId(header.author.root, header.author.id)]
    assert "1.2.250.1.213.1.1.1.1" in got.template_ids
    unstructured = {"cr-imagerie-pdf": "application/pdf", "doc-patient": "text/plain"}
    if kind in unstructured:
        assert (got.body, got.body_media_type) == ("nonXMLBody", unstructured[kind])
    else:
        assert (got.body, got.body_media_type) == ("structuredBody", None)


def test_header_fields_only_count_at_their_place(tmp_path: Path) -> None:
    """An ``id`` or ``code`` deeper in the document is not the document's."""
    doc = f"""<?xml version="1.0"?>
<?xml-stylesheet type="text/xsl" href="CDA-FO.xsl"?>
<ClinicalDocument {V3} xmlns:x="urn:other">
  <x:id root="9.9.9"/>
  <id root="1.2.250.1.999.3" extension="A-12"/>
  <id root="1.2.250.1.999.4"/>
  <recordTarget><patientRole><id root="1.2.3" extension="P1"/>
    <patient><id root="6.6.6" extension="guardian"/></patient></patientRole></recordTarget>
  <participant><associatedEntity><id root="7.7.7" extension="X"/></associatedEntity></participant>
  <component><structuredBody><component><section><id root="8.8.8"/>
    <code code="not-the-type"/></section></component></structuredBody></component>
</ClinicalDocument>"""
    got = read_header(write(tmp_path, doc))
    assert got is not None
    assert got.id == InstanceId("1.2.250.1.999.3", "A-12")
    assert got.id.as_unique_id == "1.2.250.1.999.3^A-12"
    assert got.code is None
    assert got.patient_ids == [InstanceId("1.2.3", "P1")]
    assert got.author_ids == []
    assert got.body == "structuredBody"


@pytest.mark.parametrize(
    "doc",
    [
        "<ClinicalDocument><id root='1.2'/></ClinicalDocument>",  # no namespace
        "<ClinicalDocument xmlns='urn:hl7-org:v2'/>",
        "<Signature xmlns='http://www.w3.org/2000/09/xmldsig#'><id root='1'/></Signature>",
    ],
)
def test_other_xml_is_not_cda(tmp_path: Path, doc: str) -> None:
    assert read_header(write(tmp_path, doc)) is None


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (f"<ClinicalDocument {V3}><id root='1'></ClinicalDocument>", "mismatched tag"),
        (f"<ClinicalDocument {V3}><component>", "no element found"),
        ("not xml at all", "syntax error"),
        ("", "no element found"),
        ("<a/><b/>", "junk after document element"),
        (f"<ClinicalDocument {V3}/><?xml version='1.0'?>", "junk after document element"),
        # A malformed body is found even though the header is complete.
        (
            f"<ClinicalDocument {V3}><id root='1'/><component><nonXMLBody><text>AAA"
            "</nonXMLBody></component></ClinicalDocument>",
            "mismatched tag",
        ),
        # ... and deep in a structured body, which expat checks once the walker has detached.
        (
            f"<ClinicalDocument {V3}><id root='1'/><component><structuredBody><component>"
            "<section><text><b>x</i></text></section></component></structuredBody></component>"
            "</ClinicalDocument>",
            "mismatched tag",
        ),
        (
            f"<ClinicalDocument {V3}><component><structuredBody/></component>"
            "<!DOCTYPE x></ClinicalDocument>",
            "not well-formed",
        ),
    ],
)
def test_not_well_formed(tmp_path: Path, doc: str, reason: str) -> None:
    with pytest.raises(NotWellFormed, match=reason):
        read_header(write(tmp_path, doc))


@pytest.mark.parametrize(
    "doc",
    [
        f"<!DOCTYPE ClinicalDocument><ClinicalDocument {V3}/>",
        '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><r>&b;</r>',
        '<!DOCTYPE r SYSTEM "http://example.invalid/r.dtd"><r/>',
        '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
    ],
)
def test_document_type_declarations_are_refused(tmp_path: Path, doc: str) -> None:
    with pytest.raises(NotWellFormed, match="document type declaration"):
        read_header(write(tmp_path, doc))


def test_error_messages_never_quote_content(tmp_path: Path) -> None:
    with pytest.raises(NotWellFormed) as caught:
        read_header(write(tmp_path, f"<ClinicalDocument {V3}>DUPONT Jeanne <oops</x>"))
    assert "DUPONT" not in str(caught.value)
    assert "line 1" in str(caught.value)


def test_latin1_document(tmp_path: Path) -> None:
    doc = f"<?xml version='1.0' encoding='ISO-8859-1'?><ClinicalDocument {V3}>"
    doc += "<title>Compte rendu opératoire</title><languageCode code='fr-FR'/></ClinicalDocument>"
    got = read_header(write(tmp_path, doc.encode("latin-1")))
    assert got is not None and got.language == "fr-FR"


def test_large_non_xml_body_in_flat_memory(tmp_path: Path) -> None:
    """12 MB of base64 in one text node: beyond lxml's default limit, read in a few KB."""
    payload = base64.encodebytes(b"%PDF-1.4 " + bytes(9 * 1024 * 1024))
    path = tmp_path / "big.xml"
    with open(path, "wb") as f:
        f.write(f"<ClinicalDocument {V3}><id root='1.2.3'/><component><nonXMLBody>".encode())
        f.write(b"<text mediaType='application/pdf' representation='B64'>")
        f.write(payload)
        f.write(b"</text></nonXMLBody></component></ClinicalDocument>")
    assert path.stat().st_size > 12_000_000
    tracemalloc.start()
    try:
        got = read_header(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got is not None and got.body_media_type == "application/pdf"
    assert peak < 1_000_000, peak


def test_hostile_numbers_of_ids_are_capped(tmp_path: Path) -> None:
    ids = "<id root='1.2' extension='x'/>" * 10_000
    doc = f"<ClinicalDocument {V3}><recordTarget><patientRole>{ids}</patientRole></recordTarget>"
    got = read_header(write(tmp_path, doc + "</ClinicalDocument>"))
    assert got is not None and len(got.patient_ids) == 64


@pytest.mark.parametrize(
    ("ts", "utc"),
    [
        ("20260115103000+0100", "20260115093000"),
        ("20260115003000+0100", "20260114233000"),  # crosses midnight backwards
        ("20251231233000-0300", "20260101023000"),  # and forwards, across a year
        ("20260715103000+0200", "20260715083000"),  # summer time
        ("20260115103000.1234+0100", "20260115093000"),  # fractions dropped
        ("202601151030+0100", "202601150930"),  # minute precision kept
        ("2026011510+0530", "2026011504"),  # hour precision, half-hour zone (04:30)
        ("20260115+0100", "20260115"),  # a date is not shifted
        ("20260115103000", "20260115103000"),  # no offset: read as UTC
        ("2026", "2026"),
    ],
)
def test_ts_to_utc(ts: str, utc: str) -> None:
    assert ts_to_utc(ts) == utc


@pytest.mark.parametrize(
    "ts",
    ["", "2026-01-15", "20261315", "20260230", "202601151", "20260115103000+01", "20260115+2500x"],
)
def test_malformed_ts(ts: str) -> None:
    with pytest.raises(ValueError):
        ts_to_utc(ts)


@pytest.mark.parametrize(
    ("cda", "xds", "same"),
    [
        ("20260115103000+0100", "20260115093000", True),
        ("20260115103000+0100", "20260115103000", False),  # digits copied, zone ignored
        ("20260115103000+0100", "202601150930", True),  # XDS at minute precision
        ("20260115103000+0100", "20260115", True),
        ("20260115003000+0100", "20260115", False),  # UTC date is the 14th
        ("20260115", "20260115093000", True),  # CDA at day precision
        ("20260115103059+0100", "20260115093000", False),
    ],
)
def test_same_instant(cda: str, xds: str, same: bool) -> None:
    assert same_instant(cda, xds) is same
