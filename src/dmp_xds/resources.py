"""Where the files shipped beside the code live (WSDLs, XSDs, Alembic migrations).

In a wheel they are packaged under ``dmp_xds/_data/``; in a source checkout (editable install,
tests) they are the top-level ``wsdl/``, ``schemas/`` and ``migrations/`` folders.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def resource_dir(name: str) -> Path:
    """Return the folder ``name`` (``wsdl``, ``schemas`` or ``migrations``)."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parents[1] / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"resource folder {name!r} is not installed")
