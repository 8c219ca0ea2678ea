"""A valid CDA R2 of a chosen size whose header matches its metadata, for the ITI-41 scenarios:
the 7.5 KB lettre de liaison of the test fixtures, its first narrative block grown with
paragraphs (real element text that the server's well-formedness pass reads, not a comment)."""

from __future__ import annotations

from typing import Any

PARAGRAPH = (
    "<paragraph>Examen clinique : patient conscient, orienté, eupnéique au repos. "
    "Auscultation cardiaque régulière, pas de souffle. Traitement poursuivi à l'identique, "
    "réévaluation prévue en consultation dans un mois.</paragraph>"
)


def cda_doc_of_size(patient_id: str, size: int = 20_000) -> Any:
    """A ``tests.fixtures.metadata.Doc`` with a CDA of about ``size`` bytes (at least 7.5 KB)."""
    from tests.fixtures.clinical_documents import cda_doc

    doc = cda_doc("ldl-ses", patient_id)
    missing = max(0, size - len(doc.content))
    block = PARAGRAPH.encode()
    padding = block * (missing // len(block) + 1) if missing else b""
    doc.content = doc.content.replace(b"</text>", padding + b"</text>", 1)
    return doc
