"""What every transaction handler receives: the parsed SOAP request and who is calling.

The security layer (VIHF verification) fills ``principal`` before any handler runs; handlers
never look at WS-Security headers themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from .soap.envelope import SoapRequest
from .soap.mtom import OutPart


@dataclass
class Call:
    request: SoapRequest
    request_id: str
    principal: Any = None  # security.Principal once the VIHF layer is in place
    log: dict[str, Any] = field(default_factory=dict)  # facts for the request's log line

    @property
    def payload(self) -> etree._Element:
        return self.request.payload


@dataclass
class Reply:
    """A handler's answer: the SOAP body payload and, for ITI-43, the documents to attach."""

    payload: etree._Element
    attachments: list[OutPart] = field(default_factory=list)
    force_mtom: bool = False
