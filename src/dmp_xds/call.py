"""What every transaction handler receives: the parsed SOAP request and who is calling.

The security layer (VIHF verification) fills ``principal`` before any handler runs; handlers
never look at WS-Security headers themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from .metadata.datatypes import PatientId
from .security.principal import Principal
from .soap.envelope import SoapRequest
from .soap.mtom import OutPart


@dataclass
class Call:
    request: SoapRequest
    request_id: str
    # The verified VIHF (security.principal.Principal); the application always sets it, None
    # only where a test builds a Call by hand (policy checks then refuse).
    principal: Principal | None = None
    log: dict[str, Any] = field(default_factory=dict)  # facts for the request's log line

    @property
    def payload(self) -> etree._Element:
        return self.request.payload

    @property
    def authorised_patient(self) -> PatientId | None:
        """The patient the VIHF names: the only record this call may touch."""
        return self.principal.patient if self.principal is not None else None


@dataclass
class Reply:
    """A handler's answer: the SOAP body payload and, for ITI-43, the documents to attach."""

    payload: etree._Element
    attachments: list[OutPart] = field(default_factory=list)
    force_mtom: bool = False
