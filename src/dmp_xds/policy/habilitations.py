"""The habilitation matrix: which professions may read which types of document, as data.

The DMP restricts reading by profession and document type (arrêté of 26/10/2023 and its
annex, on top of the functional rights of :mod:`.rights`). The annex's table was not
available when this was written, so the file shipped beside this module
(``habilitations.csv``) allows every profession every type, and the operator replaces it
(``DMP_XDS_HABILITATIONS``) with the legal table: rules change by decree, code should not.

A row is ``profession,type_code,allowed``: ``profession`` a TRE_G15 code (``10`` médecin,
``60`` infirmier...) or ``*``; ``type_code`` a typeCode as ``code^^scheme`` (or the bare code,
matching any scheme) or ``*``; ``allowed`` ``oui`` / ``non``. The most specific row wins
(profession and type, then type for any profession, then profession for any type, then
``*,*``); with no matching row, reading is refused (fail closed).
"""

from __future__ import annotations

import csv
import io
from functools import cache
from importlib import resources
from pathlib import Path

ANY = "*"


class Habilitations:
    def __init__(self, rules: dict[tuple[str, str], bool]) -> None:
        self._rules = rules

    @classmethod
    def parse(cls, text: str) -> Habilitations:
        rows = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
        reader = csv.DictReader(io.StringIO("\n".join(rows)))
        if reader.fieldnames != ["profession", "type_code", "allowed"]:
            raise ValueError(
                f"habilitations header must be profession,type_code,allowed, "
                f"not {','.join(reader.fieldnames or [])}"
            )
        rules: dict[tuple[str, str], bool] = {}
        for number, row in enumerate(reader, start=2):
            profession = (row["profession"] or "").strip()
            type_code = (row["type_code"] or "").strip()
            allowed = (row["allowed"] or "").strip().lower()
            if not profession or not type_code or allowed not in ("oui", "non"):
                raise ValueError(f"habilitations row {number}: bad row {row}")
            if (profession, type_code) in rules:
                raise ValueError(f"habilitations row {number}: {profession},{type_code} twice")
            rules[(profession, type_code)] = allowed == "oui"
        return cls(rules)

    def may_read(self, profession: str, type_code: str) -> bool:
        """May a holder of ``profession`` read a document of ``type_code`` (code^^scheme)?"""
        bare = type_code.split("^^", 1)[0]
        for key in (
            (profession, type_code),
            (profession, bare),
            (ANY, type_code),
            (ANY, bare),
            (profession, ANY),
            (ANY, ANY),
        ):
            if key in self._rules:
                return self._rules[key]
        return False


@cache
def load_habilitations(path: str | None = None) -> Habilitations:
    """The operator's file, or the permissive one shipped with the code."""
    if path:
        return Habilitations.parse(Path(path).read_text(encoding="utf-8"))
    text = resources.files(__package__).joinpath("habilitations.csv").read_text(encoding="utf-8")
    return Habilitations.parse(text)
