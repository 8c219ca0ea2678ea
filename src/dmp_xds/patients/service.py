"""The DMP's own LPS services, message for message: GestionDossierPatientPartage (TD0.2,
TD1.1, TD1.2, TD1.3a/b, TD1.4), Habilitations (TD0.3, TD1.6), PatientsSpecific (TD0.4) and
PDQSupplier (TD0.5).

Every answer has the shape of the national DMP's (its example messages): HL7v3 services
answer errors in the acknowledgement (``AE`` + acknowledgementDetail), the DMP-specific ones
in ``output/status`` (``DMPOk``, ``DMPClosed``...), never as SOAP faults, because that is what
DMP-compatible software reads. Only a request we cannot dispatch at all (unknown action,
broken envelope) is a SOAP fault, from the transport layer.

The patient a call may touch is the VIHF's (``resource-id``): a message naming another
patient is refused (``XDSPatientIdDoesNotMatch``, as on the XDS side). Who may call what is
the functional rights matrix's (PDT-INF-526), decided by :mod:`..policy.access` on facts read
here: a refusal is ``DMPAccessDeniedByRightsService`` in the service's own error shape, with
its reason, and changes nothing. Writes record their audit event in their own transaction;
refusals are audited by the application as failures with that code.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any

from lxml import etree
from sqlalchemy import Connection, func, select

from ..audit.trail import audit_event
from ..call import Call, Reply
from ..metadata import vocabulary as v
from ..metadata.datatypes import PatientId
from ..policy import access as policy
from ..policy import facts as policy_facts
from ..policy.rights import RightsMatrix
from ..registry import tables as registry_tables
from ..security.principal import Principal
from . import authorisations as auth
from . import hl7v3 as h
from . import vocabulary as dv
from .gate import caller_of, record_of
from .records import (
    Record,
    RecordError,
    close_record,
    create_record,
    get_record,
    reactivate_record,
    records_by_keys,
    revise_record,
    search_records,
)


def _success(payload: etree._Element, action: str) -> Reply:
    return Reply(payload, action=action, status=v.RESPONSE_SUCCESS)


def _failure(payload: etree._Element, action: str, code: str) -> Reply:
    return Reply(payload, action=action, status=v.RESPONSE_FAILURE, error_codes=[code])


def _registration_refused(
    interaction: str,
    header: h.Header,
    wrapper: etree._Element,
    action: str,
    error: h.Hl7Error | RecordError,
) -> Reply:
    """The AE answer of a record creation or revision (TD1.1, TD1.2/1.3b/1.4)."""
    root = h.message(interaction, header, wrapper)
    h.acknowledgement(root, header, "AE", (error.code, str(error)))
    h.control_act(root, header.reason)
    return _failure(wrapper, action, error.code)


def _canonical(ii: h.InstanceId) -> str:
    return PatientId(ii.extension or "", ii.root).canonical


def _vihf_patient(call: Call) -> PatientId:
    patient = call.authorised_patient
    if patient is None:  # only a hand-built Call; the application always authenticates
        raise h.Hl7Error(dv.PATIENT_MISMATCH, "no patient in the VIHF")
    return patient


def _matching(ids: list[h.InstanceId], patient: PatientId) -> h.InstanceId:
    """The message's id of the VIHF's patient; refused when the message names another."""
    for ii in ids:
        if ii.root == patient.authority and ii.extension == patient.id:
            return ii
    raise h.Hl7Error(
        dv.PATIENT_MISMATCH, "the patient of the message is not the patient of the VIHF"
    )


def authorisation_actor(principal: Principal) -> auth.Actor:
    """The calling professional as an authorisation names it (TD1.6 fields)."""
    profession, specialty = principal.profession, principal.specialty
    prefix = "G15_" if profession.system == policy_facts.PROFESSION_SYSTEM else ""
    code = f"{prefix}{profession.code}" + (f"/{specialty.code}" if specialty else "")
    label = " - ".join(c.display for c in (profession, specialty) if c is not None and c.display)
    family, _, given = (principal.subject_name or "").partition(" ")
    return auth.Actor(
        auth.PROFESSIONAL,
        principal.name_id,
        dv.PS_ID_TYPE,
        first_name=given or None,
        last_name=family or None,
        specialities=(code,),
        speciality_labels=(label,) if label else (),
    )


def _caller(call: Call, facts: auth.AccessFacts | None = None) -> policy.Actor:
    """The matrix actor of the call; a call without a verified principal is refused (only a
    hand-built Call has none)."""
    if call.principal is None:
        raise RecordError(dv.DMP_ACCESS_DENIED, "no authenticated caller")
    return caller_of(call.principal, facts)


def _facts(conn: Connection, call: Call, patient_id: str) -> auth.AccessFacts:
    principal = call.principal
    if principal is None:
        raise RecordError(dv.DMP_ACCESS_DENIED, "no authenticated caller")
    return auth.access_facts(conn, patient_id, principal.name_id, principal.structure_id)


def _enforce(call: Call, decision: policy.Decision) -> None:
    """Raise the refusal (RecordError, DMPAccessDeniedByRightsService) of a denied decision;
    its reason goes to the caller and to the request's log line."""
    if not decision:
        call.log["denied"] = decision.reason
        raise RecordError(dv.DMP_ACCESS_DENIED, decision.reason)


_REVISIONS = {
    dv.MODIFICATION: policy.RecordTransaction.MODIFY,
    dv.CLOSING: policy.RecordTransaction.CLOSE,
    dv.REACTIVATION: policy.RecordTransaction.REACTIVATE,
}
# TD0.3: (action, role) -> what the caller does.
_SET_AUTHORIZATION = {
    ("AJOUT", None): policy.RecordTransaction.AUTHORISE,
    ("AJOUT", "MEDECIN_TRAITANT"): policy.RecordTransaction.DESIGNATE_MT,
    ("SUPPRESSION", None): policy.RecordTransaction.REVOKE,
    ("SUPPRESSION", "MEDECIN_TRAITANT"): policy.RecordTransaction.REVOKE_MT,
    ("BLOCAGE", None): policy.RecordTransaction.BLOCK,
    ("DEBLOCAGE", None): policy.RecordTransaction.UNBLOCK,
}


class PatientService:
    """Handlers of the four /dmp/ endpoints (bound by ``app.py``)."""

    def __init__(
        self,
        *,
        max_search_results: int = 100,
        matrix: RightsMatrix | None = None,
    ) -> None:
        self.max_search_results = max_search_results
        self.matrix = matrix  # the operator's rights matrix (None: the shipped one)

    # --- GestionDossierPatientPartage ------------------------------------------------------------
    def get_demographics(self, call: Call) -> Reply:
        """PRPA_IN201307UV02: TD0.2 (TEST_EXST) existence test with the caller's
        authorisation status, TD1.3a (CNSLT_DATA) the record's administrative data."""
        header = h.read_header(call.payload)
        try:
            h.require_message_id(header)
            if header.reason not in (dv.TEST_EXISTENCE, dv.CONSULTATION):
                raise h.Hl7Error(
                    dv.MISSING_ELEMENT if header.reason is None else dv.WRONG_VALUE,
                    f"reasonCode must be {dv.TEST_EXISTENCE} or {dv.CONSULTATION}",
                )
            asked = h.query_patient_id(call.payload)
            _matching([asked], _vihf_patient(call))
            with call.reading() as conn:
                record = get_record(conn, _canonical(asked))
                facts = _facts(conn, call, _canonical(asked)) if record is not None else None
            # TD0.2 answers a blocked professional too: telling them is what it is for.
            transaction = (
                policy.RecordTransaction.EXISTENCE
                if header.reason == dv.TEST_EXISTENCE
                else policy.RecordTransaction.CONSULT
            )
            _enforce(
                call,
                policy.manage_record(
                    _caller(call, facts), record_of(facts), transaction, self.matrix
                ),
            )
        except (h.Hl7Error, RecordError) as error:
            root = h.message("PRPA_IN201308UV02", header)
            h.acknowledgement(root, header, "AE", (error.code, str(error)))
            h.query_ack(h.control_act(root, header.reason), header, "AE")
            return _failure(root, dv.GDP_GET_RESPONSE, error.code)
        call.audit_objects = ["record"] if record is not None else []
        root = h.message("PRPA_IN201308UV02", header)
        if header.reason == dv.TEST_EXISTENCE and facts is not None:
            status = (
                dv.AUTH_FORBIDDEN
                if facts.blocked
                else dv.AUTH_VALID
                if facts.authorised
                else dv.AUTH_NONE
            )
            h.attention_line(
                root,
                "AUTORISATION",
                dv.KEYWORD_SYSTEM,
                h.cv_value(status, dv.AUTHORISATION_VALUE_SYSTEM),
            )
            h.attention_line(
                root, "STATUT_MT", dv.MT_STATUS_SYSTEM, h.bl_value(facts.medecin_traitant)
            )
        h.acknowledgement(root, header, "AA")
        control = h.control_act(root, header.reason)
        if record is not None:
            self._record_subject(control, record, full=header.reason == dv.CONSULTATION)
        h.query_ack(control, header, "OK" if record is not None else "NF")
        return _success(root, dv.GDP_GET_RESPONSE)

    @staticmethod
    def _record_subject(control: etree._Element, record: Record, *, full: bool) -> None:
        event, patient = h.registration_event(control)
        h.patient_ids(patient, record)
        etree.SubElement(patient, h.H + "statusCode", code=h.record_status_code(record))
        h.person(patient, record, full=full)
        if full:
            for code in (dv.OPPOSITION_BRIS_DE_GLACE, dv.OPPOSITION_ACCES_URGENCE):
                value = (
                    record.oppositions.bris_de_glace
                    if code == dv.OPPOSITION_BRIS_DE_GLACE
                    else record.oppositions.acces_urgence
                )
                h.observation(
                    patient,
                    code,
                    dv.OBSERVATION_SYSTEM,
                    bool(value),
                    dv.OPPOSITION_DISPLAY[code],
                )
        else:
            h.observation(patient, dv.INTERNET_ACCOUNT, dv.ACCOUNT_SYSTEM, record.internet_account)
            h.observation(patient, dv.ENS_ATTACHED, dv.OBSERVATION_SYSTEM, record.ens_attached)
        h.custodian(event)

    def add(self, call: Call) -> Reply:
        """PRPA_IN201311UV02 (TD1.1, reasonCode CREA_RD): open the record with the patient's
        consent. The creating professional is authorised on it (they are caring for the
        patient and will feed and read the record)."""
        header = h.read_header(call.payload)
        wrapper = h.wrapper("PRPA_IN201311UV02_Response")
        try:
            h.require_message_id(header)
            if header.reason != dv.CREATION:
                raise h.Hl7Error(
                    dv.MISSING_ELEMENT if header.reason is None else dv.WRONG_VALUE,
                    f"reasonCode must be {dv.CREATION}",
                )
            request = h.read_patient_request(call.payload)
            own = _matching(request.ids, _vihf_patient(call))
            others = [
                {"root": i.root, "extension": i.extension or ""} for i in request.ids if i != own
            ]
            principal = call.principal
            # No record yet: nobody can be blocked from it; only the access mode matters.
            _enforce(
                call,
                policy.manage_record(
                    _caller(call),
                    policy.Record(exists=False),
                    policy.RecordTransaction.CREATE,
                    self.matrix,
                ),
            )
            with call.writing() as conn:
                record = create_record(
                    conn,
                    _canonical(own),
                    request.identity,
                    request.oppositions,
                    consent=request.observations.get(dv.CONSENT_OPENING, False),
                    by=principal.name_id if principal else None,
                    other_ids=others,
                )
                objects = ["record"]
                if principal is not None:
                    auth.authorise(
                        conn,
                        record.patient_key,
                        authorisation_actor(principal),
                        by=principal.name_id,
                    )
                    objects.append(f"authorisation:{principal.name_id}")
                call.audit_success(conn, objects)
        except (h.Hl7Error, RecordError) as error:
            return _registration_refused(
                "PRPA_IN201313UV02", header, wrapper, dv.GDP_ADD_RESPONSE, error
            )
        root = h.message("PRPA_IN201312UV02", header, wrapper)
        h.acknowledgement(root, header, "AA")
        event, patient = h.registration_event(h.control_act(root, dv.CREATION))
        h.patient_ids(patient, record)
        etree.SubElement(patient, h.H + "statusCode", code=h.record_status_code(record))
        h.person(patient, record, full=False, name_only=True)
        h.custodian(event)
        return _success(wrapper, dv.GDP_ADD_RESPONSE)

    def revise(self, call: Call) -> Reply:
        """PRPA_IN201314UV02: TD1.3b (MODIF_DATA) administrative data and oppositions, TD1.4
        (FERM) closing with its reason, TD1.2 (REAC) reactivation with consent."""
        header = h.read_header(call.payload)
        wrapper = h.wrapper("PRPA_IN201314UV02_Response")
        try:
            h.require_message_id(header)
            if header.reason not in (dv.MODIFICATION, dv.CLOSING, dv.REACTIVATION):
                raise h.Hl7Error(
                    dv.MISSING_ELEMENT if header.reason is None else dv.WRONG_VALUE,
                    f"reasonCode must be {dv.MODIFICATION}, {dv.CLOSING} or {dv.REACTIVATION}",
                )
            request = h.read_patient_request(call.payload)
            patient_id = _canonical(_matching(request.ids, _vihf_patient(call)))
            by = call.principal.name_id if call.principal else None
            with call.writing() as conn:
                facts = _facts(conn, call, patient_id)
                current = get_record(conn, patient_id)
                _enforce(
                    call,
                    policy.manage_record(
                        _caller(call, facts),
                        record_of(facts),
                        _REVISIONS[header.reason],
                        self.matrix,
                        attached_to_mes=current is not None and current.ens_attached,
                    ),
                )
                if header.reason == dv.MODIFICATION:
                    record = revise_record(conn, patient_id, request.identity, request.oppositions)
                elif header.reason == dv.CLOSING:
                    reason = request.closing_reason or dv.DEFAULT_CLOSING_REASON
                    record = close_record(conn, patient_id, reason, by)
                else:
                    record = reactivate_record(
                        conn,
                        patient_id,
                        consent=request.observations.get(dv.CONSENT_REACTIVATION, False),
                    )
                call.audit_success(conn, ["record"])
        except (h.Hl7Error, RecordError) as error:
            return _registration_refused(
                "PRPA_IN201316UV02", header, wrapper, dv.GDP_REVISE_RESPONSE, error
            )
        root = h.message("PRPA_IN201315UV02", header, wrapper)
        h.acknowledgement(root, header, "AA")
        event, patient = h.registration_event(h.control_act(root, header.reason))
        etree.SubElement(patient, h.H + "statusCode", code=h.record_status_code(record))
        h.person(patient, record, full=False, name_only=True)
        h.custodian(event)
        return _success(wrapper, dv.GDP_REVISE_RESPONSE)

    # --- Habilitations ---------------------------------------------------------------------------
    def set_authorization(self, call: Call) -> Reply:
        """TD0.3 setAuthorization on the VIHF's patient's record.

        National actions: ``AJOUT`` (the caller declares itself authorised; with role
        ``MEDECIN_TRAITANT``, a médecin becomes the médecin traitant) and ``SUPPRESSION``
        (removes the caller's authorisation, or only its MT role). Our extension, for what the
        national DMP does on its Web PS: ``BLOCAGE`` / ``DEBLOCAGE`` of ``target``
        (nationalId + nationalIdType: a professional or a structure), by the patient through
        a patient portal, or by the médecin traitant at the patient's request.
        """
        action = _field(call.payload, "action", dv.HAB_NS)
        role = _field(call.payload, "role", dv.HAB_NS)
        principal = call.principal
        status, context, objects = dv.DMP_OK, "", []
        try:
            if principal is None:
                raise RecordError(dv.DMP_ACCESS_DENIED, "no authenticated caller")
            if action not in ("AJOUT", "SUPPRESSION", "BLOCAGE", "DEBLOCAGE"):
                raise RecordError(
                    dv.DMP_INVALID_REQUEST, "action must be AJOUT, SUPPRESSION, BLOCAGE, DEBLOCAGE"
                )
            if role not in (None, "MEDECIN_TRAITANT"):
                raise RecordError(dv.DMP_INVALID_REQUEST, "role must be MEDECIN_TRAITANT")
            transaction = _SET_AUTHORIZATION.get((action, role))
            if transaction is None:
                raise RecordError(
                    dv.DMP_INVALID_REQUEST, "role MEDECIN_TRAITANT goes with AJOUT or SUPPRESSION"
                )
            blocking = action in ("BLOCAGE", "DEBLOCAGE")
            target = _target(call.payload) if blocking else None
            patient = _vihf_patient(call).canonical
            me = authorisation_actor(principal)
            with call.writing() as conn:
                facts = _facts(conn, call, patient)
                _enforce(
                    call,
                    policy.manage_record(
                        _caller(call, facts), record_of(facts), transaction, self.matrix
                    ),
                )
                record = _open_record(conn, patient)
                if action == "AJOUT":
                    changed = auth.authorise(
                        conn, record.patient_key, me, by=me.actor_id, medecin_traitant=bool(role)
                    )
                    target_id = me.actor_id
                elif action == "SUPPRESSION":
                    changed = auth.revoke(
                        conn,
                        record.patient_key,
                        me.actor_type,
                        me.actor_id,
                        by=me.actor_id,
                        medecin_traitant_only=bool(role),
                    )
                    target_id = me.actor_id
                else:
                    assert target is not None
                    if target.actor_id == me.actor_id:
                        raise RecordError(dv.DMP_INVALID_REQUEST, "one cannot block oneself")
                    if action == "BLOCAGE":
                        changed = auth.block(conn, record.patient_key, target, by=me.actor_id)
                    else:
                        changed = auth.unblock(
                            conn,
                            record.patient_key,
                            target.actor_type,
                            target.actor_id,
                            by=me.actor_id,
                        )
                    target_id = target.actor_id
                if changed:
                    objects = [f"authorisation:{target_id}"]
                    call.audit_success(conn, objects)
                else:
                    context = "Autorisation déjà dans cet état, aucune action effectuée"
        except (RecordError, h.Hl7Error) as error:
            status, context = error.code, str(error)
        out = _ws_response(dv.HAB_NS, "setAuthorizationResponse", [], status, context)
        if status == dv.DMP_OK:
            return _success(out, dv.HAB_SET + "Response")
        return _failure(out, dv.HAB_SET + "Response", status)

    def list_authorizations(self, call: Call) -> Reply:
        """TD1.6 listAuthorizationByPatient (mode TOUTE, ACTIVE or INTERDITE)."""
        mode = _field(call.payload, "mode", dv.HAB_NS) or auth.MODE_ALL
        items: list[etree._Element] = []
        status, context = dv.DMP_OK, ""
        try:
            if mode not in (auth.MODE_ALL, auth.MODE_ACTIVE, auth.MODE_FORBIDDEN):
                raise RecordError(dv.DMP_INVALID_REQUEST, "mode must be TOUTE, ACTIVE, INTERDITE")
            patient = _vihf_patient(call).canonical
            with call.reading() as conn:
                facts = _facts(conn, call, patient)
                _enforce(
                    call,
                    policy.manage_record(
                        _caller(call, facts),
                        record_of(facts),
                        policy.RecordTransaction.LIST_AUTHORISATIONS,
                        self.matrix,
                    ),
                )
                record = _existing_record(conn, patient)
                found = auth.list_by_patient(conn, record.patient_key, mode)
            for a in found:
                item = etree.Element(f"{{{dv.HAB_NS}}}listOfAuthorizationByPatient")
                _leaf(item, dv.HAB_NS, "nationalId", a.actor.actor_id)
                _leaf(item, dv.HAB_NS, "nationalIdType", a.actor.id_type)
                _leaf(item, dv.HAB_NS, "firstName", a.actor.first_name)
                _leaf(item, dv.HAB_NS, "lastName", a.actor.last_name)
                for code in a.actor.specialities:
                    _leaf(item, dv.HAB_NS, "codeSpeciality", code)
                for label in a.actor.speciality_labels:
                    _leaf(item, dv.HAB_NS, "libSpeciality", label)
                _leaf(item, dv.HAB_NS, "startOfAuthorization", h.hl7_time(a.started_at))
                _leaf(item, dv.HAB_NS, "lastActionDate", h.hl7_time(a.last_action_at))
                _leaf(item, dv.HAB_NS, "mode", a.mode)
                if a.medecin_traitant:
                    _leaf(item, dv.HAB_NS, "specificRight", "MEDECIN_TRAITANT")
                items.append(item)
            call.audit_objects = [f"authorisation:{a.actor.actor_id}" for a in found]
        except (RecordError, h.Hl7Error) as error:
            status, context = error.code, str(error)
        out = _ws_response(dv.HAB_NS, "listAuthorizationByPatientResponse", items, status, context)
        if status == dv.DMP_OK:
            return _success(out, dv.HAB_LIST + "Response")
        return _failure(out, dv.HAB_LIST + "Response", status)

    # --- PatientsSpecific ------------------------------------------------------------------------
    def patient_list(self, call: Call) -> Reply:
        """TD0.4 patientList: the records the calling professional is authorised on, acted on
        (LASTAUTORIZATION) or fed (LASTDOC) since ``startDate``.

        ``psOwnerId`` names another professional's list: only a CPE may ask it, for a
        professional of its own structure (matrix note 2), which we know from the audit trail
        (that professional has called us from the same structure). An institution certificate
        lists only the authorisations given since ``startDate`` (note 3)."""
        start = _field(call.payload, "startDate", dv.PATIENTS_NS)
        date_type = _field(call.payload, "dateType", dv.PATIENTS_NS) or "LASTAUTORIZATION"
        owner = _field(call.payload, "psOwnerId", dv.PATIENTS_NS)
        principal = call.principal
        items: list[etree._Element] = []
        status, context = dv.DMP_OK, None
        try:
            if date_type not in ("LASTAUTORIZATION", "LASTDOC"):
                raise RecordError(
                    dv.DMP_INVALID_REQUEST, "dateType must be LASTAUTORIZATION or LASTDOC"
                )
            since = _parse_date(start) if start else None
            me = _caller(call)
            assert principal is not None  # _caller refuses a call without one
            other = owner if owner and owner != principal.name_id else None
            listed = other or principal.name_id
            with call.reading() as conn:
                _enforce(
                    call,
                    policy.list_patients(
                        me,
                        owner=other,
                        owner_in_structure=other is not None
                        and me.kind is policy.Kind.CPE
                        and _acted_in_structure(conn, other, principal.structure_id),
                        since_given=since is not None,
                        matrix=self.matrix,
                    ),
                )
                by_authorisation = (
                    date_type == "LASTAUTORIZATION" or policy.new_authorisations_only(me)
                )
                found = auth.list_for_actor(
                    conn, auth.PROFESSIONAL, listed, since if by_authorisation else None
                )
                keys = [a.patient_key for a in found]
                records = records_by_keys(conn, keys)
                last_doc = _last_documents(conn, keys)
                last_access = _last_access(conn, [r.patient_id for r in records.values()], listed)
            for a in found:
                record = records.get(a.patient_key)
                if record is None:
                    continue
                added = last_doc.get(a.patient_key)
                stale = added is None or (since is not None and added < h.hl7_time(since))
                if date_type == "LASTDOC" and since is not None and stale:
                    continue
                items.append(_patient_item(record, a, added, last_access.get(record.patient_id)))
        except (RecordError, h.Hl7Error) as error:
            status, context = error.code, str(error)
        except ValueError as error:
            status, context = dv.DMP_INVALID_REQUEST, str(error)
        out = _ws_response(dv.PATIENTS_NS, "patientListResponse", items, status, context)
        if status == dv.DMP_OK:
            return _success(out, dv.PATIENT_LIST + "Response")
        return _failure(out, dv.PATIENT_LIST + "Response", status)

    # --- PDQSupplier -----------------------------------------------------------------------------
    def find_candidates(self, call: Call) -> Reply:
        """TD0.5 PRPA_IN201305UV02 (PDQv3 ITI-47): records matching identity traits, or the
        record of a given id. Every call is TD0.5 whatever it asks (it names patients other
        than the VIHF's): régulation only, as the matrix says."""
        header = h.read_header(call.payload)
        root = h.message("PRPA_IN201306UV02", header)
        try:
            h.require_message_id(header)
            traits, asked_id = h.read_traits(call.payload)
            if asked_id is None and not traits.selective:
                raise h.Hl7Error(
                    dv.MISSING_ELEMENT, "a family name, a birth date or a patient id is required"
                )
            _enforce(call, policy.find_patients(_caller(call), self.matrix))
            with call.reading() as conn:
                if asked_id is not None and asked_id.extension:
                    one = get_record(conn, _canonical(asked_id))
                    found = [one] if one is not None else []
                else:
                    found = search_records(conn, traits, self.max_search_results)
        except (h.Hl7Error, RecordError, ValueError) as error:
            code = error.code if isinstance(error, h.Hl7Error | RecordError) else dv.WRONG_VALUE
            h.acknowledgement(root, header, "AE", (code, str(error)), element_form=True)
            control = _pdq_control(root)
            h.query_ack(control, header, "AE")
            _echo_query(control, call.payload)
            return _failure(root, dv.PDQ_FIND_RESPONSE, code)
        shown = found[: self.max_search_results]
        h.acknowledgement(root, header, "AA", element_form=True)
        control = _pdq_control(root)
        for record in shown:
            event, patient = h.registration_event(control, event_status="active")
            h.patient_ids(patient, record)
            etree.SubElement(patient, h.H + "statusCode", code=h.record_status_code(record))
            h.person(patient, record, full=False)
            _search_addresses(patient, record)
            match = h._sub(h._sub(patient, "subjectOf1", typeCode="SBJ"), "queryMatchObservation")
            match.set("classCode", "COND")
            match.set("moodCode", "EVN")
            code = h._sub(match, "code", code="POURCENTAGE")
            code.set(h._XSI_TYPE, "CS")
            value = h._sub(match, "value", value="100")
            value.set(h._XSI_TYPE, "INT")
            h.observation(
                patient,
                dv.OPPOSITION_ACCES_URGENCE,
                dv.OBSERVATION_SYSTEM,
                bool(record.oppositions.acces_urgence),
                dv.OPPOSITION_DISPLAY[dv.OPPOSITION_ACCES_URGENCE],
                wrapper="subjectOf2",
            )
            h.custodian(event)
        ack = h.query_ack(control, header, "OK" if shown else "NF")
        h._sub(ack, "resultTotalQuantity", value=str(len(found)))
        h._sub(ack, "resultCurrentQuantity", value=str(len(shown)))
        h._sub(ack, "resultRemainingQuantity", value=str(len(found) - len(shown)))
        _echo_query(control, call.payload)
        call.audit_objects = [f"record:{r.patient_id}" for r in shown]
        return _success(root, dv.PDQ_FIND_RESPONSE)

    def handlers(self) -> dict[str, dict[str, Callable[[Call], Reply]]]:
        """Handlers per endpoint path, by SOAP action (with the aliases DMP clients send)."""
        return {
            "/dmp/GestionDossierPatientPartage": {
                dv.GDP_GET: self.get_demographics,
                # The ANS kit sets the answer's action on TD0.2/TD1.3a requests.
                dv.GDP_GET_RESPONSE: self.get_demographics,
                dv.GDP_ADD: self.add,
                dv.GDP_REVISE: self.revise,
            },
            "/dmp/Habilitations": {
                dv.HAB_SET: self.set_authorization,
                dv.HAB_SET_SOAP: self.set_authorization,
                dv.HAB_LIST: self.list_authorizations,
                dv.HAB_LIST_SOAP: self.list_authorizations,
            },
            "/dmp/PatientsSpecific": {dv.PATIENT_LIST: self.patient_list},
            "/dmp/PDQSupplier": {
                dv.PDQ_FIND: self.find_candidates,
                dv.PDQ_FIND_KIT: self.find_candidates,
            },
        }


BY_PAYLOAD = {
    "/dmp/GestionDossierPatientPartage": {
        f"{h.H}PRPA_IN201307UV02": dv.GDP_GET,
        f"{h.H}PRPA_IN201311UV02": dv.GDP_ADD,
        f"{h.H}PRPA_IN201314UV02": dv.GDP_REVISE,
    },
    "/dmp/Habilitations": {
        f"{{{dv.HAB_NS}}}setAuthorization": dv.HAB_SET,
        f"{{{dv.HAB_NS}}}listAuthorizationByPatient": dv.HAB_LIST,
    },
    # The national binding's soapAction is "": the payload decides.
    "/dmp/PatientsSpecific": {f"{{{dv.PATIENTS_NS}}}patientList": dv.PATIENT_LIST},
    "/dmp/PDQSupplier": {f"{h.H}PRPA_IN201305UV02": dv.PDQ_FIND},
}

WSDLS = {
    "/dmp/GestionDossierPatientPartage": "GestionDossierPatientPartage.wsdl",
    "/dmp/Habilitations": "Habilitations.wsdl",
    "/dmp/PatientsSpecific": "PatientsSpecific.wsdl",
    "/dmp/PDQSupplier": "PDQSupplier.wsdl",
}


# --- helpers ----------------------------------------------------------------------------------
def _field(payload: etree._Element, name: str, ns: str) -> str | None:
    """A child's text, qualified (as the WSDLs say) or not (as some clients send)."""
    for tag in (f"{{{ns}}}{name}", name):
        element = payload.find(tag)
        if element is not None and element.text and element.text.strip():
            return element.text.strip()
    return None


def _target(payload: etree._Element) -> auth.Actor:
    """Our BLOCAGE/DEBLOCAGE extension's ``target`` (nationalId, nationalIdType)."""
    target = payload.find(f"{{{dv.HAB_NS}}}target")
    if target is None:
        target = payload.find("target")
    national_id = _field(target, "nationalId", dv.HAB_NS) if target is not None else None
    id_type = (_field(target, "nationalIdType", dv.HAB_NS) if target is not None else None) or (
        dv.PS_ID_TYPE
    )
    if not national_id:
        raise RecordError(dv.DMP_INVALID_REQUEST, "target/nationalId is required to block")
    if id_type == dv.PS_ID_TYPE:
        return auth.Actor(auth.PROFESSIONAL, national_id, id_type)
    if id_type == dv.STRUCTURE_ID_TYPE:
        return auth.Actor(auth.STRUCTURE, national_id, id_type)
    raise RecordError(
        dv.DMP_INVALID_REQUEST, f"nationalIdType must be {dv.PS_ID_TYPE} or {dv.STRUCTURE_ID_TYPE}"
    )


def _existing_record(conn: Connection, patient_id: str) -> Record:
    record = get_record(conn, patient_id)
    if record is None:
        raise RecordError(dv.DMP_NOT_FOUND, "the patient has no record")
    return record


def _open_record(conn: Connection, patient_id: str) -> Record:
    record = _existing_record(conn, patient_id)
    if not record.is_open:
        raise RecordError(dv.DMP_CLOSED, "the patient's record is closed")
    return record


def _leaf(parent: etree._Element, ns: str, name: str, text: str | None) -> None:
    if text is not None:
        etree.SubElement(parent, f"{{{ns}}}{name}").text = text


def _ws_response(
    ns: str, name: str, items: list[etree._Element], status: str, context: str | None
) -> etree._Element:
    """``<name><output>items… status context</output></name>`` in the service's namespace."""
    root = etree.Element(f"{{{ns}}}{name}", nsmap={"ns1": ns})
    output = etree.SubElement(root, f"{{{ns}}}output")
    for item in items:
        output.append(item)
    _leaf(output, ns, "status", status)
    _leaf(output, ns, "context", context)
    return root


def _parse_date(value: str) -> dt.datetime:
    """``YYYYMMDD[HH[MM[SS]]]`` (UTC) -> datetime; ValueError when it is not one."""
    digits = value.strip()
    formats = {8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    if not digits.isdigit() or len(digits) not in formats:
        raise ValueError(f"startDate {value!r} is not YYYYMMDD[HHMMSS]")
    return dt.datetime.strptime(digits, formats[len(digits)]).replace(tzinfo=dt.UTC)


def _last_documents(conn: Connection, keys: list[int]) -> dict[int, str]:
    """The latest submission time (HL7 TS) per patient: TD0.4's lastAddDate."""
    if not keys:
        return {}
    s = registry_tables.submission_set
    rows = conn.execute(
        select(s.c.patient_key, func.max(s.c.submission_time))
        .where(s.c.patient_key.in_(keys))
        .group_by(s.c.patient_key)
    )
    return {key: value for key, value in rows if value}


def _last_access(conn: Connection, patient_ids: list[str], actor_id: str) -> dict[str, str]:
    """The caller's latest call on each record (the audit trail): TD0.4's lastAccessDate."""
    if not patient_ids:
        return {}
    rows = conn.execute(
        select(audit_event.c.patient_id, func.max(audit_event.c.occurred_at))
        .where(audit_event.c.patient_id.in_(patient_ids), audit_event.c.actor_id == actor_id)
        .group_by(audit_event.c.patient_id)
    )
    return {pid: h.hl7_time(at) for pid, at in rows if at is not None}


def _acted_in_structure(conn: Connection, professional: str, structure_id: str) -> bool:
    """Whether ``professional`` has called us on behalf of ``structure_id`` (the audit trail
    is the only record we keep of who works where)."""
    e = audit_event.c
    found = conn.execute(
        select(e.event_id)
        .where(e.actor_id == professional, e.structure_id == structure_id)
        .limit(1)
    ).first()
    return found is not None


def _patient_item(
    record: Record, a: auth.Authorisation, added: str | None, accessed: str | None
) -> etree._Element:
    ns = dv.PATIENTS_NS
    item = etree.Element(f"{{{ns}}}patientlistData")
    ids = [(o["root"], o.get("extension")) for o in record.other_ids]
    matricule, _, rest = record.patient_id.partition("^^^&")
    ids.append((rest.split("&")[0], matricule))
    for root, extension in ids:
        identifier = etree.SubElement(item, f"{{{ns}}}patientIdentifier")
        _leaf(identifier, ns, "nationalId", extension)
        _leaf(identifier, ns, "nationalIdType", root)
    _leaf(item, ns, "lastName", record.identity.family or record.identity.birth_name)
    _leaf(item, ns, "firstName", record.identity.given)
    _leaf(item, ns, "dateOfBirth", record.identity.birth_date)
    _leaf(item, ns, "MT", "true" if a.medecin_traitant else "false")
    _leaf(item, ns, "message", "false")
    _leaf(item, ns, "lastAccessDate", accessed)
    _leaf(item, ns, "lastUpdateDate", h.hl7_time(record.updated_at))
    _leaf(item, ns, "lastAddDate", added)
    return item


def _search_addresses(patient: etree._Element, record: Record) -> None:
    """A search candidate's addresses, city and postal code only (what the national PDQ answer
    gives to tell namesakes apart, and no more)."""
    person = patient.find(h.H + "patientPerson")
    assert person is not None
    for address in record.identity.addresses or []:
        parts = {c.get("tag"): c.get("text") for c in address.get("children", [])}
        shown = [(tag, parts[tag]) for tag in ("city", "postalCode") if parts.get(tag)]
        if shown:
            addr = h._sub(person, "addr")
            for tag, text in shown:
                h._sub(addr, tag, text)


def _pdq_control(root: etree._Element) -> etree._Element:
    control = h._sub(root, "controlActProcess", classCode="CACT", moodCode="EVN")
    code = h._sub(control, "code", code="PRPA_TE201306UV02", codeSystem=dv.INTERACTION_ROOT)
    code.set(h._XSI_TYPE, "CS")
    return control


def _echo_query(control: etree._Element, payload: etree._Element) -> None:
    """PDQv3 answers repeat the query they answer."""
    query = payload.find(f"{h.H}controlActProcess/{h.H}queryByParameter")
    if query is not None:
        control.append(_copy(query))


def _copy(element: etree._Element) -> Any:
    return copy.deepcopy(element)
