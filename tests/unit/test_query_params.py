"""Stored query parameter syntax and the parameter rules of each query."""

from __future__ import annotations

import pytest
from lxml import etree

from dmp_xds.errors import ErrorCode
from dmp_xds.metadata import vocabulary as v
from dmp_xds.registry.queries import QUERIES
from dmp_xds.registry.query_params import (
    ParamSyntaxError,
    QueryRequest,
    check_params,
    parse_value,
    read_query_request,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'a'", ["a"]),
        ("  'a b'  ", ["a b"]),
        ("('a','b')", ["a", "b"]),
        ("( 'a' , 'b' )", ["a", "b"]),
        ("'it''s'", ["it's"]),
        ("('x^^1.2', 'y^^')", ["x^^1.2", "y^^"]),
        ("12", ["12"]),
        ("(1, 2)", ["1", "2"]),
    ],
)
def test_parse_value(text: str, expected: list[str]) -> None:
    assert parse_value(text) == expected


@pytest.mark.parametrize("text", ["", "a", "('a'", "'a", "('a' 'b')", "'a' x", "(,)"])
def test_parse_value_rejects(text: str) -> None:
    with pytest.raises(ParamSyntaxError):
        parse_value(text)


def _request(slots: dict[str, list[str]], query_id: str = v.FIND_DOCUMENTS) -> etree._Element:
    rim = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
    q = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
    root = etree.Element(f"{{{q}}}AdhocQueryRequest")
    etree.SubElement(root, f"{{{q}}}ResponseOption", returnType="ObjectRef")
    query = etree.SubElement(root, f"{{{rim}}}AdhocQuery", id=query_id)
    for name, values in slots.items():
        slot = etree.SubElement(query, f"{{{rim}}}Slot", name=name)
        vl = etree.SubElement(slot, f"{{{rim}}}ValueList")
        for value in values:
            etree.SubElement(vl, f"{{{rim}}}Value").text = value
    return root


def test_read_query_request_groups_values() -> None:
    req, errors = read_query_request(
        _request(
            {
                "$XDSDocumentEntryPatientId": ["'1^^^&1.2&ISO'"],
                "$XDSDocumentEntryEventCodeList": ["('a^^s','b^^s')", "('c^^s')"],
            }
        )
    )
    assert errors == [] and req is not None
    assert req.return_type == "ObjectRef"
    assert req.params["$XDSDocumentEntryEventCodeList"] == [["a^^s", "b^^s"], ["c^^s"]]


def test_syntax_errors_name_the_parameter() -> None:
    _, errors = read_query_request(_request({"$XDSDocumentEntryStatus": ["Approved"]}))
    assert [e.location for e in errors] == ["$XDSDocumentEntryStatus"]


def test_every_standard_stored_query_is_registered() -> None:
    names = {q.name for q in QUERIES.values()}
    assert names == {
        "FindDocuments",
        "FindDocumentsByReferenceId",
        "FindSubmissionSets",
        "FindFolders",
        "GetAll",
        "GetDocuments",
        "GetFolders",
        "GetAssociations",
        "GetDocumentsAndAssociations",
        "GetSubmissionSets",
        "GetSubmissionSetAndContents",
        "GetFolderAndContents",
        "GetFoldersForDocument",
        "GetRelatedDocuments",
    }


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({}, "required parameter $XDSDocumentEntryPatientId is missing"),
        (
            {"$XDSDocumentEntryPatientId": [["a", "b"]], "$XDSDocumentEntryStatus": [["s"]]},
            "takes a single value",
        ),
        (
            {
                "$XDSDocumentEntryPatientId": [["a"]],
                "$XDSDocumentEntryStatus": [["s"]],
                "$XDSDocumentEntryNope": [["x"]],
            },
            "is not a parameter",
        ),
        (
            {
                "$XDSDocumentEntryPatientId": [["a"]],
                "$XDSDocumentEntryStatus": [["s"]],
                "$XDSDocumentEntryCreationTimeFrom": [["2020"], ["2021"]],
            },
            "takes a single value",
        ),
    ],
)
def test_find_documents_parameter_rules(params: dict, problem: str) -> None:
    q = QUERIES[v.FIND_DOCUMENTS]
    errors = check_params(QueryRequest(q.query_id, "ObjectRef", params), q.params, q.one_of)
    assert errors
    assert any(problem in e.message for e in errors)
    expected = (
        ErrorCode.STORED_QUERY_MISSING_PARAM
        if "missing" in problem
        else ErrorCode.STORED_QUERY_PARAM_NUMBER
    )
    assert {e.code for e in errors} == {expected}


def test_exclusive_parameters() -> None:
    q = QUERIES[v.GET_DOCUMENTS]
    none = check_params(QueryRequest(q.query_id, "LeafClass", {}), q.params, q.one_of)
    both = check_params(
        QueryRequest(
            q.query_id,
            "LeafClass",
            {"$XDSDocumentEntryEntryUUID": [["u"]], "$XDSDocumentEntryUniqueId": [["1.2"]]},
        ),
        q.params,
        q.one_of,
    )
    assert none and both
    assert "exactly one of" in none[0].message and "got" in both[0].message
