"""The DMP's functional rights matrix (PDT-INF-526) as data, and how to read a cell.

The matrix is a CSV shipped beside this module (``rights_matrix.csv``) and replaceable by the
operator (``DMP_XDS_RIGHTS_MATRIX``): rights change with the DMP's versions, code should not.
A cell is allowed or refused, and an allowed cell may carry a condition from the matrix's
footnotes, which the access rules (:mod:`.access`) apply to each document.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path


class Column(StrEnum):
    """Who acts, and in which access mode: the matrix's columns."""

    PS_NORMAL = "ps_normal"
    PS_REGULATION = "ps_regulation"
    PS_BRIS_DE_GLACE = "ps_bris_de_glace"
    MEDECIN_NORMAL = "medecin_normal"
    MEDECIN_REGULATION = "medecin_regulation"
    MEDECIN_BRIS_DE_GLACE = "medecin_bris_de_glace"
    MEDECIN_TRAVAIL = "medecin_travail"
    MT_NORMAL = "mt_normal"
    MT_BRIS_DE_GLACE = "mt_bris_de_glace"
    CPE = "cpe"
    ES_NORMAL = "es_normal"
    ES_REGULATION = "es_regulation"
    # Ours, not the national matrix's: the patient (or a legal representative) through the
    # host's patient portal; normal access mode only.
    PATIENT = "patient"


class Condition(StrEnum):
    """What an allowed cell's footnote still requires."""

    OWN_DOCUMENTS = "own_documents"  # notes 6 and 8 (for the patient: what the patient wrote)
    PATIENT_CONSENT = "patient_consent"  # note 7
    STRUCTURE_DOCUMENTS = "structure_documents"  # note 9


_NOTE_CONDITIONS = {
    "6": Condition.OWN_DOCUMENTS,
    "8": Condition.OWN_DOCUMENTS,
    "7": Condition.PATIENT_CONSENT,
    "9": Condition.STRUCTURE_DOCUMENTS,
}
_CELL = re.compile(r"^(oui|non)(?:\((\d+)\))?$")


@dataclass(frozen=True, slots=True)
class Right:
    allowed: bool
    condition: Condition | None = None
    note: str | None = None


class RightsMatrix:
    def __init__(self, cells: dict[tuple[str, Column], Right]) -> None:
        self._cells = cells

    @classmethod
    def parse(cls, text: str) -> RightsMatrix:
        rows = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
        reader = csv.DictReader(io.StringIO("\n".join(rows)))
        columns = [c for c in (reader.fieldnames or [])[1:]]
        unknown = set(columns) - {c.value for c in Column}
        missing = {c.value for c in Column} - set(columns)
        if unknown or missing:
            raise ValueError(
                f"rights matrix columns: unknown {unknown or '{}'}, missing {missing or '{}'}"
            )
        cells: dict[tuple[str, Column], Right] = {}
        for row in reader:
            action = row["action"].strip()
            for column in Column:
                raw = (row.get(column.value) or "").strip().lower()
                match = _CELL.match(raw)
                if not match:
                    raise ValueError(f"rights matrix {action}/{column.value}: bad cell {raw!r}")
                allowed, note = match.group(1) == "oui", match.group(2)
                condition = _NOTE_CONDITIONS.get(note or "") if allowed else None
                cells[(action, column)] = Right(allowed, condition, note)
        return cls(cells)

    def right(self, action: str, column: Column) -> Right:
        """The cell; an action the matrix does not list is refused (fail closed)."""
        return self._cells.get((action, column), Right(False))

    @property
    def actions(self) -> set[str]:
        return {action for action, _ in self._cells}


@cache
def load_matrix(path: str | None = None) -> RightsMatrix:
    """The operator's matrix file, or the one shipped with the code."""
    if path:
        return RightsMatrix.parse(Path(path).read_text(encoding="utf-8"))
    text = resources.files(__package__).joinpath("rights_matrix.csv").read_text(encoding="utf-8")
    return RightsMatrix.parse(text)
