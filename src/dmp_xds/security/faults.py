"""Security refusals as SOAP faults with the WS-Security 1.1 fault codes.

Two subcodes only, as the WS-Security specification defines them:

- ``wsse:InvalidSecurity``: the ``wsse:Security`` header or its assertion is not what we accept
  (missing, malformed, wrapped, unknown algorithm, missing or malformed attribute, unknown access
  mode). The caller's software is wrong; retrying the same message cannot succeed.
- ``wsse:FailedAuthentication``: the message is well-formed but does not prove who is calling
  (bad signature, untrusted/expired/revoked certificate, expired or replayed assertion,
  software not homologated, TLS certificate missing or naming someone else).

Each fault also carries ``check``, a short stable name of the check that failed, for the
structured log line and for tests; the reason is meant for a human and names what was wrong but
never echoes patient identifiers.
"""

from __future__ import annotations

from ..errors import FaultCode, SoapFault
from ..namespaces import WSSE

INVALID_SECURITY = (WSSE, "InvalidSecurity")
FAILED_AUTHENTICATION = (WSSE, "FailedAuthentication")


class SecurityFault(SoapFault):
    """A refused call. Sender fault, HTTP 400 (SOAP 1.2 HTTP binding)."""

    def __init__(self, check: str, reason: str, *, authentication: bool = False) -> None:
        super().__init__(
            FaultCode.SENDER,
            reason,
            subcode=FAILED_AUTHENTICATION if authentication else INVALID_SECURITY,
        )
        self.check = check


def invalid(check: str, reason: str) -> SecurityFault:
    """The security header is not acceptable (``wsse:InvalidSecurity``)."""
    return SecurityFault(check, reason)


def failed(check: str, reason: str) -> SecurityFault:
    """The caller is not authenticated (``wsse:FailedAuthentication``)."""
    return SecurityFault(check, reason, authentication=True)
