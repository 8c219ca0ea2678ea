"""The WSGI application: endpoints bound to transaction handlers, WSDL publishing, health.

Request path (DESIGN.md): transport (``soap``) -> security (principal; the VIHF layer plugs in
at ``_authenticate``) -> handler (metadata, registry, repository) -> response. Handlers answer
XDS errors as RegistryResponses; everything that escapes them becomes a SOAP fault without a
traceback.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lxml import etree
from sqlalchemy import Connection

from .audit.export import exporter_from_settings
from .audit.service import BY_PAYLOAD as TRACES_BY_PAYLOAD
from .audit.service import PATH as TRACES_PATH
from .audit.service import WSDL as TRACES_WSDL
from .audit.service import TraceService
from .audit.trail import AuditEvent, Auditor, record
from .call import Call, Reply
from .config import Settings
from .errors import FaultCode, SoapFault
from .metadata import vocabulary as v
from .namespaces import LCM, QUERY, RS, WSA, XDSB
from .ops import Operations, infrastructure_fault
from .patients.gate import Rules
from .patients.service import BY_PAYLOAD as DMP_BY_PAYLOAD
from .patients.service import WSDLS as DMP_WSDLS
from .patients.service import PatientService
from .registry.database import make_engine
from .registry.service import RegistryService
from .repository.service import RepositoryService
from .repository.store import open_store
from .resources import resource_dir
from .security.authenticate import Authenticator
from .security.faults import SecurityFault
from .security.principal import Principal
from .soap.envelope import (
    Limits,
    SoapRequest,
    fault_response,
    read_soap_request,
    soap_response,
)
from .soap.wsdl import WsdlPublisher

log = logging.getLogger("dmp_xds.request")
security_log = logging.getLogger("dmp_xds.security")

Handler = Callable[[Call], Reply]


@dataclass(frozen=True)
class Endpoint:
    path: str
    wsdl: str
    handlers: dict[str, Handler]
    # When a client sends no wsa:Action, the payload's element decides (SOAP 1.1 clients).
    by_payload: dict[str, str]


class Application:
    """The WSGI callable. Built once per worker process (engine and store are per process)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(
            settings.database_url or "",
            connect_timeout_s=settings.db_connect_timeout_s,
            statement_timeout_ms=settings.db_statement_timeout_s * 1000,
            prepare=settings.db_prepare,
        )
        self.store = open_store(settings.effective_store_url)
        self.limits = Limits(
            max_body_bytes=settings.max_body_bytes,
            max_xml_bytes=settings.max_xml_bytes,
            max_attachments=settings.max_attachments,
            max_depth=settings.max_xml_depth,
        )
        self.wsdl = WsdlPublisher(resource_dir("wsdl"), resource_dir("schemas"))
        # Security is always on: without a trust store every call is refused (said here).
        self.authenticator = Authenticator.from_settings(settings, self.engine)
        self.ops = Operations(self.engine, self.store)  # /ready, /metrics (ops.py)
        # The trail, and its optional ATNA copy (DMP_XDS_ATNA_URL, audit/export.py).
        self.auditor = Auditor(
            self.engine,
            exporter_from_settings(
                settings, lambda result: self.ops.metrics.ATNA_MESSAGES.labels(result).inc()
            ),
        )
        for problem in self.authenticator.problems():
            security_log.warning("security configuration: %s", problem)
        # The DMP's rules; a malformed operator file stops the start-up here.
        rules = Rules.load(
            str(settings.rights_matrix) if settings.rights_matrix else None,
            str(settings.habilitations) if settings.habilitations else None,
        )
        patients = PatientService(matrix=rules.matrix)
        registry = RegistryService(
            max_query_results=settings.max_query_results,
            rules=rules,
            store=self.store,
            purge_authorised=settings.purge_authorised,
        )
        repository = RepositoryService(
            self.store,
            repository_unique_id=settings.repository_unique_id,
            rules=rules,
            store_concurrency=settings.store_concurrency,
        )
        self.endpoints = {
            e.path: e
            for e in (
                Endpoint(
                    "/xds/registry",
                    "XDS.b_DocumentRegistry.wsdl",
                    {
                        v.ACTION_REGISTER: registry.register,
                        v.ACTION_UPDATE: registry.update,
                        v.ACTION_DELETE: registry.remove,
                        v.ACTION_STORED_QUERY: registry.stored_query,
                    },
                    {
                        f"{{{LCM}}}SubmitObjectsRequest": v.ACTION_REGISTER,
                        f"{{{QUERY}}}AdhocQueryRequest": v.ACTION_STORED_QUERY,
                        f"{{{LCM}}}RemoveObjectsRequest": v.ACTION_DELETE,
                    },
                ),
                Endpoint(
                    "/xds/repository",
                    "XDS.b_DocumentRepository.wsdl",
                    {
                        v.ACTION_PNR: repository.provide_and_register,
                        v.ACTION_RETRIEVE: repository.retrieve,
                    },
                    {
                        f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest": v.ACTION_PNR,
                        f"{{{XDSB}}}RetrieveDocumentSetRequest": v.ACTION_RETRIEVE,
                    },
                ),
                # The DMP's own LPS services (patients/service.py): record, authorisations.
                *(
                    Endpoint(path, DMP_WSDLS[path], handlers, DMP_BY_PAYLOAD[path])
                    for path, handlers in patients.handlers().items()
                ),
                # Trace queries on the VIHF's patient's trail (audit/service.py).
                Endpoint(
                    TRACES_PATH,
                    TRACES_WSDL,
                    TraceService(rules).handlers(),
                    TRACES_BY_PAYLOAD,
                ),
            )
        }

    # --- WSGI ---------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/health":
            return self._plain(start_response, "200 OK", b"ok\n")
        if path == "/ready":
            return self.ops.ready(start_response)
        if path == "/metrics":
            return self.ops.metrics_page(start_response)
        endpoint = self.endpoints.get(path.rstrip("/"))
        if endpoint is None:
            return self._plain(start_response, "404 Not Found", b"no such endpoint\n")
        if method in ("GET", "HEAD"):
            return self._publish(environ, start_response, endpoint)
        if method != "POST":
            return self._plain(start_response, "405 Method Not Allowed", b"POST SOAP here\n")
        return self._soap(environ, start_response, endpoint)

    def _plain(self, start_response: Callable, status: str, body: bytes) -> list[bytes]:
        start_response(
            status,
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _publish(
        self, environ: dict[str, Any], start_response: Callable, endpoint: Endpoint
    ) -> list[bytes]:
        query = environ.get("QUERY_STRING", "")
        url = _request_url(environ, endpoint.path)
        if query.lower() == "wsdl":
            body: bytes | None = self.wsdl.wsdl(endpoint.wsdl, url)
        elif query.startswith("xsd="):
            body = self.wsdl.xsd(query[4:], url)
        else:
            body = None
        if body is None:
            return self._plain(start_response, "404 Not Found", b"append ?wsdl to the URL\n")
        start_response(
            "200 OK",
            [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _soap(
        self, environ: dict[str, Any], start_response: Callable, endpoint: Endpoint
    ) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        request: SoapRequest | None = None
        facts: dict[str, Any] = {"request_id": request_id, "endpoint": endpoint.path}
        try:
            request = read_soap_request(environ, self.store.spool_dir, self.limits)
            action = self._action(request, environ, endpoint)
            facts["action"] = action
            # Transport errors (above) come first: malformed XML never reaches xmlsec, and
            # takes no database connection. From here on the request uses one connection
            # (call.py says how reads and writes share it).
            with self.engine.connect() as db:
                principal = self._authenticate(request, environ, db)
                facts.update(principal.log_facts())
                call = Call(
                    request,
                    request_id,
                    principal=principal,
                    action=action,
                    remote_addr=environ.get("REMOTE_ADDR"),
                    db=db,
                )
                reply = endpoint.handlers[action](call)
                facts.update(call.log)
                facts["status"] = (
                    reply.status or reply.payload.get("status") or _nested_status(reply.payload)
                )
                if call.audit_event is None:
                    # Before the answer leaves: no unaudited read (a failure here is a
                    # fault). The event commits with the read's transaction.
                    event = AuditEvent(
                        request_id,
                        action,
                        _OUTCOMES.get(facts["status"] or "", "failure"),
                        principal,
                        error_codes=reply.error_codes or _error_codes(reply.payload),
                        objects=call.audit_objects,
                        remote_addr=call.remote_addr,
                    )
                    record(db, event)
                    db.commit()
                    self.auditor.export(event, request.payload)
                else:
                    self.auditor.export(call.audit_event, request.payload)  # committed
            response = soap_response(
                request.version,
                reply.payload,
                action=reply.action or v.response_action(action),
                relates_to=request.addressing.message_id,
                attachments=reply.attachments,
                force_mtom=reply.force_mtom,
                spliced=reply.spliced,
            )
        except SecurityFault as fault:
            facts["fault"] = fault.reason
            facts["security_check"] = fault.check
            security_log.warning(
                "call refused",
                extra={
                    "request_id": request_id,
                    "endpoint": endpoint.path,
                    "check": fault.check,
                    "subcode": fault.subcode[1] if fault.subcode else None,
                    "reason": fault.reason,
                    "remote_addr": environ.get("REMOTE_ADDR"),
                },
            )
            self._audit_refusal(request_id, facts.get("action"), "refused", fault.reason, environ)
            response = fault_response(
                request.version if request else None,
                fault,
                relates_to=request.addressing.message_id if request else None,
            )
        except SoapFault as fault:
            facts["fault"] = fault.reason
            self._audit_refusal(request_id, facts.get("action"), "fault", fault.reason, environ)
            response = fault_response(
                request.version if request else None,
                fault,
                relates_to=request.addressing.message_id if request else None,
            )
        except Exception as exc:
            # A database or store outage is a Receiver fault naming the XDS code (ops.py says
            # why); anything else is a bug, logged with its place but never sent to the caller.
            unavailable = infrastructure_fault(exc)
            if unavailable is not None:
                facts["fault"], facts["component"] = unavailable.reason, unavailable.component
                log.warning("dependency failed", extra={**facts, "problem": type(exc).__name__})
                fault: SoapFault = unavailable
            else:
                facts["fault"] = "internal error"
                log.exception("unexpected error", extra=facts)
                fault = SoapFault(FaultCode.RECEIVER, f"internal error (request {request_id})")
            self._audit_refusal(request_id, facts.get("action"), "fault", fault.reason, environ)
            response = fault_response(
                request.version if request else None,
                fault,
                relates_to=request.addressing.message_id if request else None,
            )
        finally:
            if request is not None:
                request.cleanup()
        facts["http_status"] = int(response.status.split()[0])
        facts["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
        log.info("request", extra=facts)
        if facts.get("emergency"):
            # Break-glass and centre 15: one more line, on the security log, for each call.
            security_log.warning(
                "emergency access", extra={k: facts.get(k) for k in _EMERGENCY_FACTS}
            )
        self.ops.observe(facts, time.perf_counter() - started)
        start_response(response.status, [*response.headers, ("X-Request-Id", request_id)])
        return response.body

    def _audit_refusal(
        self,
        request_id: str,
        action: str | None,
        outcome: str,
        reason: str,
        environ: dict[str, Any],
    ) -> None:
        """Refused and failed calls are in the trail too; losing such an event (database
        down) must not hide the fault the caller is about to get, so it is logged instead."""
        try:
            self.auditor.record(
                AuditEvent(
                    request_id,
                    action,
                    outcome,
                    remote_addr=environ.get("REMOTE_ADDR"),
                    detail=reason[:500],
                )
            )
        except Exception:
            log.exception("audit event not recorded", extra={"request_id": request_id})

    def _action(self, request: SoapRequest, environ: dict[str, Any], endpoint: Endpoint) -> str:
        action = request.addressing.action
        if not action:
            soap_action = environ.get("HTTP_SOAPACTION", "").strip('"')
            action = soap_action or endpoint.by_payload.get(request.payload.tag, "")
        if action not in endpoint.handlers:
            raise SoapFault(
                FaultCode.SENDER,
                f"action {action!r} is not supported at {endpoint.path}",
                subcode=(WSA, "ActionNotSupported"),
            )
        return action

    def _authenticate(
        self, request: SoapRequest, environ: dict[str, Any], db: Connection
    ) -> Principal:
        """The VIHF check, once per request, before any handler (raises SecurityFault)."""
        return self.authenticator.authenticate(request, environ, db)


# What the security log says of an emergency access (the patient by hash only, no motive text:
# it is free text and may name people; the trail keeps it).
_EMERGENCY_FACTS = (
    "request_id",
    "endpoint",
    "action",
    "principal",
    "profession",
    "structure",
    "auth_mode",
    "access_mode",
    "motive_given",
    "software",
    "patient_hash",
    "status",
    "fault",
    "http_status",
)

_OUTCOMES = {
    v.RESPONSE_SUCCESS: "success",
    v.RESPONSE_PARTIAL: "partial",
    v.RESPONSE_FAILURE: "failure",
}


def _error_codes(payload: etree._Element) -> list[str]:
    return [e.get("errorCode", "") for e in payload.iter(f"{{{RS}}}RegistryError")]


def _nested_status(payload: etree._Element) -> str | None:
    for child in payload:
        if isinstance(child.tag, str) and child.get("status"):
            return child.get("status")
    return None


def _request_url(environ: dict[str, Any], path: str) -> str:
    scheme = environ.get("HTTP_X_FORWARDED_PROTO") or environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or (
        f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    )
    return f"{scheme}://{host}{path}"


def create_app(settings: Settings | None = None) -> Application:
    return Application(settings or Settings.from_env())
