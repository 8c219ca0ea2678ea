"""Stored query parameters (ITI-18 3.18.4.1.2.3): reading the Slot values of an AdhocQuery.

A Value holds a number, a quoted string ``'x'`` (quotes doubled inside) or a list
``('a', 'b')``. Values of one Value are alternatives (OR); several Value elements of one Slot
are, for the parameters that allow it (event codes, confidentiality codes, folder codes),
conditions that must all hold (AND); for the other parameters they are alternatives too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lxml import etree

from ..errors import ErrorCode, XdsError
from ..namespaces import RIM

Groups = list[list[str]]


class ParamSyntaxError(ValueError):
    pass


def parse_value(text: str) -> list[str]:
    """One Value element's text -> its alternatives."""
    s = text.strip()
    if not s:
        raise ParamSyntaxError("empty value")
    if s.startswith("("):
        if not s.endswith(")"):
            raise ParamSyntaxError(f"unbalanced parentheses in {s!r}")
        items, pos, inner = [], 0, s[1:-1]
        while True:
            item, pos = _scalar(inner, pos)
            items.append(item)
            pos = _skip_space(inner, pos)
            if pos == len(inner):
                return items
            if inner[pos] != ",":
                raise ParamSyntaxError(f"expected ',' in {s!r}")
            pos += 1
    item, pos = _scalar(s, 0)
    if _skip_space(s, pos) != len(s):
        raise ParamSyntaxError(f"unexpected text after value in {s!r}")
    return [item]


def _skip_space(s: str, pos: int) -> int:
    while pos < len(s) and s[pos].isspace():
        pos += 1
    return pos


def _scalar(s: str, pos: int) -> tuple[str, int]:
    pos = _skip_space(s, pos)
    if pos < len(s) and s[pos] == "'":
        out, pos = [], pos + 1
        while pos < len(s):
            if s[pos] == "'":
                if pos + 1 < len(s) and s[pos + 1] == "'":
                    out.append("'")
                    pos += 2
                    continue
                return "".join(out), pos + 1
            out.append(s[pos])
            pos += 1
        raise ParamSyntaxError(f"unterminated quoted string in {s!r}")
    end = pos
    while end < len(s) and s[end] not in ",)" and not s[end].isspace():
        end += 1
    token = s[pos:end]
    if not token or not token.lstrip("-").isdigit():
        raise ParamSyntaxError(f"value {token or s!r} must be quoted or numeric")
    return token, end


@dataclass
class QueryRequest:
    query_id: str
    return_type: str
    params: dict[str, Groups] = field(default_factory=dict)
    home_community_id: str | None = None
    # Patient keys the caller has already looked up, by canonical patient id (the record
    # gate's), so that a Find* query does not look its patient up a second time.
    known_keys: dict[str, int] = field(default_factory=dict)


def read_query_request(request: etree._Element) -> tuple[QueryRequest | None, list[XdsError]]:
    """Read a ``query:AdhocQueryRequest``; syntax problems are XDSRegistryError-level errors."""
    errors: list[XdsError] = []
    option = request.find("{urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0}ResponseOption")
    return_type = option.get("returnType", "LeafClass") if option is not None else "LeafClass"
    query = request.find(f"{{{RIM}}}AdhocQuery")
    if query is None or not query.get("id"):
        return None, [
            XdsError(
                ErrorCode.REGISTRY_ERROR, "AdhocQueryRequest has no AdhocQuery id", "AdhocQuery"
            )
        ]
    params: dict[str, Groups] = {}
    for slot in query.iterchildren(f"{{{RIM}}}Slot"):
        name = slot.get("name", "")
        groups = params.setdefault(name, [])
        for value in slot.iterfind(f"{{{RIM}}}ValueList/{{{RIM}}}Value"):
            try:
                groups.append(parse_value(value.text or ""))
            except ParamSyntaxError as exc:
                errors.append(XdsError(ErrorCode.REGISTRY_ERROR, f"parameter {name}: {exc}", name))
    req = QueryRequest(query.get("id", ""), return_type, params, query.get("home"))
    return req, errors


@dataclass(frozen=True)
class Param:
    """How a stored query parameter may be given."""

    name: str
    required: bool = False
    multiple: bool = True  # more than one alternative allowed
    and_groups: bool = False  # several Value elements mean AND
    coded: bool = False  # values are 'code^^scheme'


def check_params(
    req: QueryRequest, spec: Sequence[Param], one_of: Sequence[Sequence[str]] = ()
) -> list[XdsError]:
    """Required, cardinality and exclusivity rules; unknown parameters are reported too."""
    errors: list[XdsError] = []
    known = {p.name: p for p in spec}
    for name in req.params:
        if name not in known:
            errors.append(
                XdsError(
                    ErrorCode.STORED_QUERY_PARAM_NUMBER,
                    f"parameter {name} is not a parameter of this stored query",
                    name,
                )
            )
    for p in spec:
        groups = req.params.get(p.name)
        if not groups:
            if p.required:
                errors.append(
                    XdsError(
                        ErrorCode.STORED_QUERY_MISSING_PARAM,
                        f"required parameter {p.name} is missing",
                        p.name,
                    )
                )
            continue
        if p.coded:
            errors += [
                XdsError(
                    ErrorCode.REGISTRY_ERROR,
                    f"parameter {p.name}: {value!r} is not a coded value 'code^^scheme'",
                    p.name,
                )
                for group in groups
                for value in group
                if not _is_coded(value)
            ]
        if not p.multiple and (len(groups) > 1 or len(groups[0]) > 1):
            errors.append(
                XdsError(
                    ErrorCode.STORED_QUERY_PARAM_NUMBER,
                    f"parameter {p.name} takes a single value",
                    p.name,
                )
            )
    for names in one_of:
        given = [n for n in names if req.params.get(n)]
        if len(given) != 1:
            errors.append(
                XdsError(
                    ErrorCode.STORED_QUERY_PARAM_NUMBER
                    if given
                    else ErrorCode.STORED_QUERY_MISSING_PARAM,
                    f"exactly one of {', '.join(names)} must be given"
                    + (f" (got {', '.join(given)})" if given else ""),
                    "/".join(names),
                )
            )
    return errors


def _is_coded(value: str) -> bool:
    code, sep, scheme = value.partition("^^")
    return bool(code and sep and scheme and "^" not in scheme)


def single(req: QueryRequest, name: str) -> str | None:
    groups = req.params.get(name)
    return groups[0][0] if groups else None


def alternatives(req: QueryRequest, name: str) -> list[str]:
    """All values of a parameter as one OR list."""
    return [v for g in req.params.get(name, []) for v in g]


def and_groups(req: QueryRequest, name: str) -> Groups:
    return req.params.get(name, [])
