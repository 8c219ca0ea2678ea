"""The DMP's access rules on the XDS endpoints, per role, over the real server (issue #5).

One record per test: the physician ``medecin`` wrote three documents (plain, masked to
professionals, invisible to the patient); ``generaliste`` is the patient's médecin traitant,
``infirmier`` another authorised professional, ``sage-femme`` nobody the patient chose. Who
may search (ITI-18), read (ITI-43), feed (ITI-41/42) and change documents (ITI-57) is what
policy/access.py decides from the PDT-INF-526 matrix; the rule tables are unit-tested in
tests/unit/test_policy_access.py, this checks that the endpoints apply them.

The patient acts too, through the host's patient portal (a VIHF with the HL7 role PAT, or
GUARD for a legal representative, signed by a portal the server trusts): they read their
record, masked documents included, but not what awaits the announcement consultation, and
manage the documents they contributed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from dmp_xds.audit.trail import audit_event
from dmp_xds.client.xds import SoapFaultError, XdsClient
from dmp_xds.metadata import vocabulary as v
from dmp_xds.namespaces import WSSE
from dmp_xds.patients import authorisations as auth
from dmp_xds.patients.records import close_record
from tests.conftest import (
    REPOSITORY_UNIQUE_ID,
    schema_checked,
    snapshot,
    start_server,
    stop_server,
)
from tests.fixtures.metadata import (
    INVISIBLE_TO_GUARDIANS,
    INVISIBLE_TO_PATIENT,
    MASKED,
    RPLC,
    Doc,
    association,
    new_patient_id,
    submit_objects_request,
)
from tests.fixtures.records import open_record, professional_actor
from tests.fixtures.security import proxy_session
from tests.fixtures.updates import new_version, reversion, status_update, versions

UNIQUE_ID_SCHEME = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
DENIED = "DMPAccessDeniedByRightsService"
# The test PKI's institution (Identifiant_Structure of indirect VIHFs).
PKI_STRUCTURE = "10B0999991"
STRUCTURE_XON = f"CENTRE DE SANTE DE TEST^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^{PKI_STRUCTURE}"


@dataclass
class Dossier:
    patient_id: str
    key: int
    plain: Doc
    masked: Doc
    invisible: Doc

    @property
    def all(self) -> set[str]:
        return {self.plain.unique_id, self.masked.unique_id, self.invisible.unique_id}


def make_dossier(engine: Engine, client_for, **record: object) -> Dossier:
    pid = new_patient_id()
    with engine.begin() as conn:
        key = open_record(
            conn,
            pid,
            authorised=("medecin", "infirmier"),
            medecin_traitant="generaliste",
            **record,  # type: ignore[arg-type]
        )
    plain = Doc(b"plain document")
    masked = Doc(b"masked document", more_confidentiality=(MASKED,))
    invisible = Doc(b"not yet announced", more_confidentiality=(INVISIBLE_TO_PATIENT,))
    docs = [plain, masked, invisible]
    contents = {f"Document{i:02d}": d.content for i, d in enumerate(docs, start=1)}
    stored = client_for(pid).provide_and_register(submit_objects_request(pid, docs), contents)
    assert stored.status == "Success", stored.errors
    return Dossier(pid, key, plain, masked, invisible)


@pytest.fixture
def dossier(engine: Engine, client_for) -> Dossier:
    return make_dossier(engine, client_for)


def as_(client_for, dossier: Dossier, who: str = "medecin", **vihf: object) -> XdsClient:
    return client_for(dossier.patient_id, vihf={"professional": who, **vihf})


def found(client: XdsClient, patient_id: str, *statuses: str) -> set[str]:
    result = client.stored_query(
        v.FIND_DOCUMENTS,
        {
            "$XDSDocumentEntryPatientId": patient_id,
            "$XDSDocumentEntryStatus": list(statuses or [v.APPROVED]),
        },
    )
    assert result.status == "Success", result.errors
    return {
        e.get("value")
        for o in result.objects
        for e in o.iter("{*}ExternalIdentifier")
        if e.get("identificationScheme") == UNIQUE_ID_SCHEME
    }


def retrieved(client: XdsClient, doc: Doc) -> bool:
    result = client.retrieve([(REPOSITORY_UNIQUE_ID, doc.unique_id)])
    if result.documents:
        assert result.documents[0].content == doc.content
        return True
    assert result.error_codes == ["XDSDocumentUniqueIdError"], result.errors
    return False


def refused(result, code: str = DENIED) -> str:
    assert result.status == "Failure", result
    assert result.error_codes == [code], result.errors
    return result.errors[0].context


# --- reading: who sees what ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "vihf", "sees"),
    [
        # the author sees its masked document; the médecin traitant sees everything
        ("medecin", {}, {"plain", "masked", "invisible"}),
        ("generaliste", {}, {"plain", "masked", "invisible"}),
        # another authorised professional does not see what is masked to professionals
        ("infirmier", {}, {"plain", "invisible"}),
        # in direct mode with a card the same rules hold
        ("infirmier", {"authentication_mode": "DIRECTE", "signer": None}, {"plain", "invisible"}),
        # break-glass and centre 15 without authorisation: masked documents need the
        # patient's consent in those modes (footnote 7), which the DMP does not record here
        ("sage-femme", {"access_mode": "bris_de_glace"}, {"plain", "invisible"}),
        ("sage-femme", {"access_mode": "BRIS_DE_GLACE"}, {"plain", "invisible"}),
        ("sage-femme", {"access_mode": "centre_15"}, {"plain", "invisible"}),
    ],
)
def test_who_sees_what(client_for, test_pki, dossier: Dossier, who, vihf, sees) -> None:
    if vihf.get("authentication_mode") == "DIRECTE":  # the card, through the trusted proxy
        client = client_for(
            dossier.patient_id,
            vihf={"professional": who, **vihf},
            session=proxy_session(test_pki, who),
        )
    else:
        client = as_(client_for, dossier, who, **vihf)
    expected = {getattr(dossier, name).unique_id for name in sees}
    assert found(client, dossier.patient_id) == expected
    for name in ("plain", "masked", "invisible"):
        doc = getattr(dossier, name)
        assert retrieved(client, doc) == (doc.unique_id in expected), name


def test_the_medecin_du_travail_reads_no_document(
    client_for, engine: Engine, dossier: Dossier, server
) -> None:
    """A physician whose VIHF specialty is SM25 (occupational medicine) is the matrix's
    médecin du travail: authorised, it searches the record but is shown no document and
    reads none (TD3.2 non), yet feeds the record and manages what it wrote (TD3.3, note 8).
    Before, it was taken for any physician and read everything."""
    with engine.begin() as conn:
        auth.authorise(conn, dossier.key, professional_actor("medecin-travail"), by="test")
    travail = as_(client_for, dossier, "medecin-travail")
    assert found(travail, dossier.patient_id) == set()
    for doc in (dossier.plain, dossier.masked, dossier.invisible):
        assert not retrieved(travail, doc)
    aptitude = Doc(
        b"avis d'aptitude",
        author_person="899900000052^TRAVAIL^MARC^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS",
    )
    fed = travail.provide_and_register(
        submit_objects_request(dossier.patient_id, [aptitude]), {"Document01": aptitude.content}
    )
    assert fed.status == "Success", fed.errors
    assert found(travail, dossier.patient_id) == set()  # not even its own to read
    ours = versions(as_(client_for, dossier), aptitude)[0].get("id")
    plain = versions(as_(client_for, dossier), dossier.plain)[0].get("id")
    before = snapshot(engine, server.store_dir)
    kept = travail.update(
        status_update(
            dossier.patient_id, plain, {"OriginalStatus": v.APPROVED, "NewStatus": v.ARCHIVED}
        )
    )
    assert plain in refused(kept, "UnresolvedReferenceException")  # one it cannot find
    assert snapshot(engine, server.store_dir) == before
    archived = travail.update(
        status_update(
            dossier.patient_id, ours, {"OriginalStatus": v.APPROVED, "NewStatus": v.ARCHIVED}
        )
    )
    assert archived.status == "Success", archived.errors


def test_get_queries_leave_hidden_documents_out(client_for, dossier: Dossier) -> None:
    """GetDocuments naming a masked document answers as if it did not exist, and the
    submission set's contents do not reveal it through an association either."""
    nurse = as_(client_for, dossier, "infirmier")
    by_id = nurse.stored_query(
        v.GET_DOCUMENTS,
        {"$XDSDocumentEntryUniqueId": [dossier.masked.unique_id, dossier.plain.unique_id]},
    )
    assert by_id.status == "Success" and len(by_id.objects) == 1
    author = as_(client_for, dossier)
    masked_uuid = versions(author, dossier.masked)[0].get("id")
    sets = author.stored_query(
        v.FIND_SUBMISSION_SETS,
        {"$XDSSubmissionSetPatientId": dossier.patient_id, "$XDSSubmissionSetStatus": [v.APPROVED]},
    )
    ss_uuid = sets.objects[0].get("id")
    contents = nurse.stored_query(
        v.GET_SUBMISSION_SET_AND_CONTENTS, {"$XDSSubmissionSetEntryUUID": ss_uuid}
    )
    assert contents.status == "Success"
    assert masked_uuid not in {o.get(a) for o in contents.objects for a in ("id", "targetObject")}
    shown = author.stored_query(
        v.GET_SUBMISSION_SET_AND_CONTENTS, {"$XDSSubmissionSetEntryUUID": ss_uuid}
    )
    assert masked_uuid in {o.get(a) for o in shown.objects for a in ("id", "targetObject")}


@pytest.mark.parametrize(
    ("who", "vihf", "record", "block", "reason"),
    [
        ("sage-femme", {}, {}, None, "not authorised"),
        ("infirmier", {}, {}, "infirmier", "blocked"),
        # a blocked professional gets nothing, even in break-glass mode
        ("infirmier", {"access_mode": "bris_de_glace"}, {}, "infirmier", "blocked"),
        (
            "sage-femme",
            {"access_mode": "bris_de_glace"},
            {"opposes_break_glass": True},
            None,
            "opposed break-glass",
        ),
        (
            "sage-femme",
            {"access_mode": "centre_15"},
            {"opposes_emergency_access": True},
            None,
            "opposed emergency",
        ),
    ],
)
def test_refused_readers(client_for, engine: Engine, who, vihf, record, block, reason) -> None:
    dossier = make_dossier(engine, client_for, **record)
    if block:
        with engine.begin() as conn:
            auth.block(conn, dossier.key, professional_actor(block), by="test")
    client = as_(client_for, dossier, who, **vihf)
    query = client.stored_query(
        v.FIND_DOCUMENTS,
        {"$XDSDocumentEntryPatientId": dossier.patient_id, "$XDSDocumentEntryStatus": [v.APPROVED]},
    )
    assert reason in refused(query)
    assert query.objects == []
    read = client.retrieve([(REPOSITORY_UNIQUE_ID, dossier.plain.unique_id)])
    assert read.documents == [] and read.error_codes == [DENIED]


def test_institution_certificate_finds_references_only(
    client_for, engine: Engine, dossier: Dossier
) -> None:
    """Plain indirect authentication acts as the institution: it may feed the record and
    look up references to the documents it could delete (its structure's), nothing more."""
    institution = as_(client_for, dossier, "medecin", authentication_mode="INDIRECTE")
    ours = Doc(b"from the establishment's system", author_institution=STRUCTURE_XON)
    fed = institution.provide_and_register(
        submit_objects_request(dossier.patient_id, [ours]), {"Document01": ours.content}
    )
    assert fed.status == "Success", fed.errors
    leaf = institution.stored_query(
        v.FIND_DOCUMENTS,
        {"$XDSDocumentEntryPatientId": dossier.patient_id, "$XDSDocumentEntryStatus": [v.APPROVED]},
    )
    assert "ObjectRef" in refused(leaf)
    refs = institution.stored_query(
        v.FIND_DOCUMENTS,
        {"$XDSDocumentEntryPatientId": dossier.patient_id, "$XDSDocumentEntryStatus": [v.APPROVED]},
        return_type="ObjectRef",
    )
    ours_uuid = versions(as_(client_for, dossier), ours)[0].get("id")
    assert [o.get("id") for o in refs.objects] == [ours_uuid]
    read = institution.retrieve([(REPOSITORY_UNIQUE_ID, ours.unique_id)])
    assert read.error_codes == [DENIED]
    # ... and it may delete its structure's document (note 9); the physician's is one it
    # cannot find, so for it that document does not exist.
    gone = institution.update(
        status_update(
            dossier.patient_id, ours_uuid, {"OriginalStatus": v.APPROVED, "NewStatus": v.DELETED}
        )
    )
    assert gone.status == "Success", gone.errors
    plain_uuid = versions(as_(client_for, dossier), dossier.plain)[0].get("id")
    kept = institution.update(
        status_update(
            dossier.patient_id, plain_uuid, {"OriginalStatus": v.APPROVED, "NewStatus": v.DELETED}
        )
    )
    assert plain_uuid in refused(kept, "UnresolvedReferenceException")


# --- feeding -------------------------------------------------------------------------------


def test_feeding_needs_an_open_record_not_an_authorisation(
    client_for, engine: Engine, unchanged
) -> None:
    """Anyone the patient has not blocked may add documents (no authorisation needed); no
    record, a closed record or a block refuse, and nothing is written."""
    pid = new_patient_id()
    doc = Doc(b"refused document")

    def send(who: str = "sage-femme"):
        client = client_for(pid, vihf={"professional": who})
        return client.provide_and_register(
            submit_objects_request(pid, [doc]), {"Document01": doc.content}
        )

    assert pid in refused(send(), "XDSUnknownPatientId")
    with engine.begin() as conn:
        key = open_record(conn, pid, authorised=())
        auth.block(conn, key, professional_actor("infirmier"), by="test")
    assert "blocked" in refused(send("infirmier"))
    with engine.begin() as conn:
        close_record(conn, pid, "test", by="test")
    assert "closed" in refused(send(), "DMPClosed")
    registered = client_for(pid).register(submit_objects_request(pid, [doc], registry_side=True))
    assert "closed" in refused(registered, "DMPClosed")


def test_an_unauthorised_professional_may_feed(client_for, engine: Engine) -> None:
    pid = new_patient_id()
    with engine.begin() as conn:
        open_record(conn, pid, authorised=())
    doc = Doc(b"fed without authorisation")
    client = client_for(pid, vihf={"professional": "sage-femme"})
    stored = client.provide_and_register(
        submit_objects_request(pid, [doc]), {"Document01": doc.content}
    )
    assert stored.status == "Success", stored.errors
    # ... but may not read the record back
    assert refused(client.retrieve([(REPOSITORY_UNIQUE_ID, doc.unique_id)]))


# --- changing documents (TD3.3 through ITI-57) ---------------------------------------------


def change_confidentiality(
    client_for, client: XdsClient, dossier: Dossier, doc: Doc, *more: tuple[str, str, str]
):
    """An ITI-57 new version of ``doc`` whose DMP confidentiality codes are ``more``, the rest of
    its metadata sent back as stored (as a DMP client does)."""
    history = versions(as_(client_for, dossier, "generaliste"), doc)  # the MT sees them all
    return client.update(reversion(dossier.patient_id, history[-1], len(history), more))


def test_masking_and_unmasking(client_for, dossier: Dossier) -> None:
    author, nurse, mt = (
        as_(client_for, dossier, w) for w in ("medecin", "infirmier", "generaliste")
    )
    assert dossier.plain.unique_id in found(nurse, dossier.patient_id)
    masked = change_confidentiality(client_for, author, dossier, dossier.plain, MASKED)
    assert masked.status == "Success", masked.errors
    assert dossier.plain.unique_id not in found(nurse, dossier.patient_id)
    assert dossier.plain.unique_id in found(mt, dossier.patient_id)
    # only the author (or the MT) unmasks (footnote 8); the nurse cannot even see it, so
    # for her it does not exist (test_changes_to_documents_one_cannot_find)
    refused(
        change_confidentiality(client_for, nurse, dossier, dossier.plain),
        "XDSMetadataVersionError",
    )
    unmasked = change_confidentiality(client_for, author, dossier, dossier.plain)
    assert unmasked.status == "Success", unmasked.errors
    assert dossier.plain.unique_id in found(nurse, dossier.patient_id)
    # the masking went through versions: same uniqueId, one approved version at a time
    history = versions(mt, dossier.plain)
    assert [h.get("status") for h in history] == [v.DEPRECATED, v.DEPRECATED, v.APPROVED]


def test_a_masking_changes_the_codes_only(
    client_for, dossier: Dossier, engine: Engine, server
) -> None:
    """A professional who may mask another's document (TD3.3a) may not, in the same new
    version, rewrite the rest of its metadata (here its title and its author): that is a
    correction, the author's alone. Nothing changes; the author may do both."""
    author, nurse = as_(client_for, dossier), as_(client_for, dossier, "infirmier")
    history = versions(author, dossier.plain)
    rewritten = reversion(dossier.patient_id, history[-1], len(history), (MASKED,))
    entry = rewritten.find(".//{*}ExtrinsicObject")
    entry.find("{*}Name/{*}LocalizedString").set("value", "Un autre titre")
    for slot in entry.iter("{*}Slot"):
        if slot.get("name") == "authorPerson":
            slot.find(
                "{*}ValueList/{*}Value"
            ).text = "899900000099^AUTRE^AUTEUR^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
    before = snapshot(engine, server.store_dir)
    assert "author" in refused(nurse.update(rewritten))
    assert snapshot(engine, server.store_dir) == before
    masked_only = reversion(dossier.patient_id, history[-1], len(history), (MASKED,))
    assert nurse.update(masked_only).status == "Success"
    history = versions(author, dossier.plain)
    rewritten = reversion(dossier.patient_id, history[-1], len(history), (MASKED,))
    rewritten.find(".//{*}ExtrinsicObject/{*}Name/{*}LocalizedString").set("value", "Corrigé")
    assert author.update(rewritten).status == "Success"


def test_making_a_document_visible_to_the_patient(client_for, dossier: Dossier) -> None:
    nurse = as_(client_for, dossier, "infirmier")
    visible = change_confidentiality(client_for, nurse, dossier, dossier.invisible)
    assert visible.status == "Success", visible.errors
    codes = {
        c.get("nodeRepresentation")
        for c in versions(nurse, dossier.invisible)[-1].iter("{*}Classification")
    }
    assert "INVISIBLE_PATIENT" not in codes
    # hiding a shared document from the patient again is no DMP operation
    again = change_confidentiality(
        client_for, nurse, dossier, dossier.invisible, INVISIBLE_TO_PATIENT
    )
    refused(again, "XDSMetadataUpdateOperationError")


def _unknown_answer(result, named: str) -> tuple[str, str]:
    """The error of an ITI-57 naming a document it cannot find, with that document's id
    replaced: what it must share with the answer for an id that exists nowhere."""
    assert result.status == "Failure", result
    [error] = result.errors
    return error.code, error.context.replace(named, "<id>")


def test_changes_to_documents_one_cannot_find(
    client_for, dossier: Dossier, engine: Engine, unchanged
) -> None:
    """TD3.3 on a document the caller could not find (a search does not show it, it is not
    theirs) is answered exactly as on a document that does not exist: no rights refusal
    saying "only the author may", which would tell it exists. Nothing changes."""
    author, nurse, stranger = (
        as_(client_for, dossier, w) for w in ("medecin", "infirmier", "sage-femme")
    )
    masked = versions(author, dossier.masked)[-1]
    plain = versions(author, dossier.plain)[-1]
    nowhere = f"urn:uuid:{uuid.uuid4()}"
    # new versions: unmasking or making visible a masked document, masking as a stranger
    unknown_version = _unknown_answer(
        nurse.update(
            new_version(
                dossier.patient_id,
                Doc(dossier.plain.content, unique_id=dossier.plain.unique_id),
                nowhere,
            )
        ),
        nowhere,
    )
    assert unknown_version[0] == "XDSMetadataVersionError"
    for client, doc, codes in (
        (nurse, dossier.masked, ()),  # unmask
        (nurse, dossier.masked, (MASKED,)),  # revise (another title would do the same)
        (stranger, dossier.plain, (MASKED,)),  # mask: not authorised on the record
    ):
        entry = versions(author, doc)[-1]
        lid = entry.get("lid") or entry.get("id")
        answer = change_confidentiality(client_for, client, dossier, doc, *codes)
        assert _unknown_answer(answer, lid) == unknown_version
    # status updates: archiving or deleting what one cannot see
    unknown_status = _unknown_answer(
        nurse.update(
            status_update(
                dossier.patient_id, nowhere, {"OriginalStatus": v.APPROVED, "NewStatus": v.DELETED}
            )
        ),
        nowhere,
    )
    assert unknown_status[0] == "UnresolvedReferenceException"
    for client, entry in ((nurse, masked), (stranger, plain)):
        answer = client.update(
            status_update(
                dossier.patient_id,
                entry.get("id"),
                {"OriginalStatus": v.DELETED, "NewStatus": v.APPROVED},  # wrong: not told
            )
        )
        assert _unknown_answer(answer, entry.get("id")) == unknown_status
    # the author's own document, masked or not, is the author's to change as ever
    assert [h.get("status") for h in versions(author, dossier.masked)] == [v.APPROVED]


def _replace(client: XdsClient, dossier: Dossier, target: str) -> tuple[Doc, object]:
    """ITI-41 of a new document that replaces (RPLC) the entry ``target``."""
    new = Doc(b"a replacement")
    result = client.provide_and_register(
        submit_objects_request(
            dossier.patient_id, [new], extra_objects=association("rplc", RPLC, "Document01", target)
        ),
        {"Document01": new.content},
    )
    return new, result


def test_replacing_a_document_one_cannot_find(
    client_for, dossier: Dossier, engine: Engine, server
) -> None:
    """A replacement deprecates the document it names: naming one the caller could not find
    (masked from them, or on a record they are not authorised on) is answered exactly as an
    id that exists nowhere, and leaves the document as it was; its author replaces it."""
    author, nurse, stranger = (
        as_(client_for, dossier, w) for w in ("medecin", "infirmier", "sage-femme")
    )
    masked, plain = (versions(author, d)[-1].get("id") for d in (dossier.masked, dossier.plain))
    nowhere = f"urn:uuid:{uuid.uuid4()}"
    unknown = _unknown_answer(_replace(nurse, dossier, nowhere)[1], nowhere)
    assert unknown[0] == "UnresolvedReferenceException"
    before = snapshot(engine, server.store_dir)
    for client, target in ((nurse, masked), (stranger, plain)):
        assert _unknown_answer(_replace(client, dossier, target)[1], target) == unknown
    assert snapshot(engine, server.store_dir) == before
    new, replaced = _replace(author, dossier, masked)
    assert replaced.status == "Success", replaced.errors
    assert [h.get("status") for h in versions(author, dossier.masked)] == [v.DEPRECATED]
    assert new.unique_id in found(author, dossier.patient_id)


def test_dmp_codes_count_only_in_their_code_system(
    client_for, dossier: Dossier, engine: Engine, server
) -> None:
    """MASQUE_PS masks in the DMP's code system (J58, 1.2.250.1.213.1.1.4.13) only: the same
    letters in another scheme mask nothing, on a new document or in an ITI-57 version, where
    adding them is a mere revision (the author's, refused to anyone else)."""
    lookalike = ("MASQUE_PS", "1.2.250.1.999.4.13", "Pas le code du DMP")
    author, nurse = as_(client_for, dossier), as_(client_for, dossier, "infirmier")
    shown = Doc(b"not masked at all", more_confidentiality=(lookalike,))
    stored = author.provide_and_register(
        submit_objects_request(dossier.patient_id, [shown]), {"Document01": shown.content}
    )
    assert stored.status == "Success", stored.errors
    assert shown.unique_id in found(nurse, dossier.patient_id)
    assert retrieved(nurse, shown)
    before = snapshot(engine, server.store_dir)
    answer = change_confidentiality(client_for, nurse, dossier, dossier.plain, lookalike)
    assert "author" in refused(answer)  # a revision, not a masking (which she may do)
    assert snapshot(engine, server.store_dir) == before
    revised = change_confidentiality(client_for, author, dossier, dossier.plain, lookalike)
    assert revised.status == "Success", revised.errors
    assert dossier.plain.unique_id in found(nurse, dossier.patient_id)


def test_masking_is_refused_in_emergency_modes(client_for, dossier: Dossier, unchanged) -> None:
    glass = as_(client_for, dossier, "sage-femme", access_mode="bris_de_glace")
    assert "TD3.3a_masquer" in refused(
        change_confidentiality(client_for, glass, dossier, dossier.plain, MASKED)
    )


def test_oppositions_close_emergency_changes(client_for, engine: Engine, server) -> None:
    """An emergency mode the patient opposed changes nothing in the record: archiving (which
    the matrix allows a physician in break-glass and régulation), or an institution in
    régulation looking up and deleting its own documents' references."""
    open_ = make_dossier(engine, client_for)
    closed = make_dossier(
        engine, client_for, opposes_break_glass=True, opposes_emergency_access=True
    )
    ours = Doc(b"from the regulation centre", author_institution=STRUCTURE_XON)
    institution = as_(client_for, closed, authentication_mode="INDIRECTE")
    fed = institution.provide_and_register(
        submit_objects_request(closed.patient_id, [ours]), {"Document01": ours.content}
    )
    assert fed.status == "Success", fed.errors
    ours_uuid = versions(as_(client_for, closed), ours)[0].get("id")

    def archive(dossier: Dossier, **vihf: object):
        uuid_ = versions(as_(client_for, dossier), dossier.plain)[-1].get("id")
        return as_(client_for, dossier, **vihf).update(
            status_update(
                dossier.patient_id, uuid_, {"OriginalStatus": v.APPROVED, "NewStatus": v.ARCHIVED}
            )
        )

    def references(client: XdsClient):
        return client.stored_query(
            v.FIND_DOCUMENTS,
            {
                "$XDSDocumentEntryPatientId": closed.patient_id,
                "$XDSDocumentEntryStatus": [v.APPROVED],
            },
            return_type="ObjectRef",
        )

    assert archive(open_, access_mode="bris_de_glace").status == "Success"
    assert [o.get("id") for o in references(institution).objects] == [ours_uuid]
    before = snapshot(engine, server.store_dir)
    assert "opposed break-glass" in refused(archive(closed, access_mode="bris_de_glace"))
    assert "opposed emergency" in refused(archive(closed, access_mode="centre_15"))
    regulation = as_(client_for, closed, authentication_mode="INDIRECTE", access_mode="centre_15")
    assert "opposed emergency" in refused(references(regulation))
    gone = regulation.update(
        status_update(
            closed.patient_id, ours_uuid, {"OriginalStatus": v.APPROVED, "NewStatus": v.DELETED}
        )
    )
    assert "opposed emergency" in refused(gone)
    assert snapshot(engine, server.store_dir) == before
    for doc in (closed.plain, ours):
        assert [h.get("status") for h in versions(as_(client_for, closed), doc)] == [v.APPROVED]


def test_archiving_and_deleting(client_for, dossier: Dossier) -> None:
    author, nurse = as_(client_for, dossier, "medecin"), as_(client_for, dossier, "infirmier")
    uuid = versions(author, dossier.plain)[0].get("id")

    def status(client: XdsClient, original: str, new: str):
        return client.update(
            status_update(dossier.patient_id, uuid, {"OriginalStatus": original, "NewStatus": new})
        )

    # archiving: the author's business (footnote 8); the document leaves the default view
    assert "author" in refused(status(nurse, v.APPROVED, v.ARCHIVED))
    assert status(author, v.APPROVED, v.ARCHIVED).status == "Success"
    assert dossier.plain.unique_id not in found(nurse, dossier.patient_id)
    assert dossier.plain.unique_id in found(nurse, dossier.patient_id, v.ARCHIVED)
    assert retrieved(nurse, dossier.plain)  # kept for medico-legal purposes, still readable
    assert status(author, v.ARCHIVED, v.APPROVED).status == "Success"
    # deletion: the author only; then gone from every view, retrieve included
    assert "author" in refused(status(nurse, v.APPROVED, v.DELETED))
    assert status(author, v.APPROVED, v.DELETED).status == "Success"
    for client in (author, nurse, as_(client_for, dossier, "generaliste")):
        assert dossier.plain.unique_id not in found(
            client, dossier.patient_id, v.APPROVED, v.ARCHIVED, v.DELETED
        )
        assert not retrieved(client, dossier.plain)
    # a deleted document stays deleted (only a purge removes it)
    refused(status(author, v.DELETED, v.APPROVED), "XDSMetadataUpdateOperationError")


def test_patients_own_document_only_the_mt_deletes(client_for, engine: Engine, server) -> None:
    """ "*": a document the patient wrote is archived and deleted by the médecin traitant
    only, although the MT's deletion cell says "own documents" (footnote 8): the physician
    who sent it is refused and changes nothing, the MT archives and deletes it."""
    dossier = make_dossier(engine, client_for)
    patient_author = (
        f"{dossier.patient_id.split('^')[0]}^PATIENT^TEST^^^^^^&1.2.250.1.213.1.4.10&ISO^L^^^NH"
    )
    own = Doc(b"written by the patient", author_person=patient_author)
    stored = as_(client_for, dossier).provide_and_register(
        submit_objects_request(dossier.patient_id, [own]), {"Document01": own.content}
    )
    assert stored.status == "Success", stored.errors
    uuid_ = versions(as_(client_for, dossier), own)[0].get("id")
    mt = as_(client_for, dossier, "generaliste")

    def status(client: XdsClient, original: str, new: str):
        return client.update(
            status_update(dossier.patient_id, uuid_, {"OriginalStatus": original, "NewStatus": new})
        )

    before = snapshot(engine, server.store_dir)
    for new in (v.ARCHIVED, v.DELETED):
        assert "médecin traitant" in refused(status(as_(client_for, dossier), v.APPROVED, new))
    assert snapshot(engine, server.store_dir) == before
    assert status(mt, v.APPROVED, v.ARCHIVED).status == "Success"
    assert status(mt, v.ARCHIVED, v.APPROVED).status == "Success"
    deleted = status(mt, v.APPROVED, v.DELETED)
    assert deleted.status == "Success", deleted.errors
    assert own.unique_id not in found(mt, dossier.patient_id, v.APPROVED, v.ARCHIVED)
    assert not retrieved(mt, own)


def test_refusals_are_in_the_trail(client_for, engine: Engine, dossier: Dossier) -> None:
    client = as_(client_for, dossier, "sage-femme")
    client.stored_query(
        v.FIND_DOCUMENTS,
        {"$XDSDocumentEntryPatientId": dossier.patient_id, "$XDSDocumentEntryStatus": [v.APPROVED]},
    )
    with engine.connect() as conn:
        row = conn.execute(
            select(audit_event.c.outcome, audit_event.c.error_codes, audit_event.c.actor_id)
            .where(audit_event.c.patient_id == dossier.patient_id)
            .order_by(audit_event.c.event_id.desc())
            .limit(1)
        ).one()
    assert row.outcome == "failure" and row.error_codes == [DENIED]
    assert row.actor_id == professional_actor("sage-femme").actor_id


# --- the patient, through the host's patient portal ----------------------------------------


def patient_author(dossier: Dossier) -> str:
    """The patient as a document's author (XCN in the INS domain: patient-contributed)."""
    matricule = dossier.patient_id.split("^")[0]
    return f"{matricule}^PATIENT^TEST^^^^^^&1.2.250.1.213.1.4.10&ISO^L^^^NH"


def test_the_patient_reads_masked_documents_not_unannounced_ones(
    client_for, dossier: Dossier
) -> None:
    """Masked documents stay visible to the patient; one invisible to the patient appears
    once a professional makes it visible (TD3.3b, the announcement consultation)."""
    patient = as_(client_for, dossier, "patient")
    assert found(patient, dossier.patient_id) == {dossier.plain.unique_id, dossier.masked.unique_id}
    assert retrieved(patient, dossier.masked)
    assert not retrieved(patient, dossier.invisible)
    announced = change_confidentiality(
        client_for, as_(client_for, dossier, "medecin"), dossier, dossier.invisible
    )
    assert announced.status == "Success", announced.errors
    assert found(patient, dossier.patient_id) == dossier.all
    assert retrieved(patient, dossier.invisible)


def test_a_legal_representative_does_not_see_what_is_hidden_from_them(
    client_for, dossier: Dossier
) -> None:
    private = Doc(b"the minor's own business", more_confidentiality=(INVISIBLE_TO_GUARDIANS,))
    stored = as_(client_for, dossier).provide_and_register(
        submit_objects_request(dossier.patient_id, [private]), {"Document01": private.content}
    )
    assert stored.status == "Success", stored.errors
    guardian = as_(client_for, dossier, "representant")
    assert found(guardian, dossier.patient_id) == {
        dossier.plain.unique_id,
        dossier.masked.unique_id,
    }
    assert not retrieved(guardian, private)
    assert not retrieved(guardian, dossier.invisible)  # hidden from the patient's side too
    patient = as_(client_for, dossier, "patient")
    assert private.unique_id in found(patient, dossier.patient_id)
    assert retrieved(patient, private)


def test_the_patient_manages_their_own_documents_only(
    client_for, dossier: Dossier, engine: Engine, server
) -> None:
    """The patient adds a document they wrote (TD2.1; not one 'by' a professional), archives
    and deletes it ("*": or the patient), but masks nothing and deletes no professional's
    document: refused, nothing changes."""
    patient = as_(client_for, dossier, "patient")
    before = snapshot(engine, server.store_dir)
    forged = Doc(b"a letter 'from' my doctor")  # the default author: the physician
    assert "only the patient" in refused(
        patient.provide_and_register(
            submit_objects_request(dossier.patient_id, [forged]), {"Document01": forged.content}
        )
    )
    assert snapshot(engine, server.store_dir).rows == before.rows  # (bytes wait for gc)
    own = Doc(b"my own notes", author_person=patient_author(dossier))
    stored = patient.provide_and_register(
        submit_objects_request(dossier.patient_id, [own]), {"Document01": own.content}
    )
    assert stored.status == "Success", stored.errors
    assert own.unique_id in found(patient, dossier.patient_id)
    plain_uuid = versions(patient, dossier.plain)[-1].get("id")
    own_uuid = versions(patient, own)[-1].get("id")

    def status(target: str, original: str, new: str):
        return patient.update(
            status_update(
                dossier.patient_id, target, {"OriginalStatus": original, "NewStatus": new}
            )
        )

    before = snapshot(engine, server.store_dir)
    assert "TD3.3a_masquer" in refused(
        change_confidentiality(client_for, patient, dossier, dossier.plain, MASKED)
    )
    assert "author" in refused(status(plain_uuid, v.APPROVED, v.DELETED))
    assert snapshot(engine, server.store_dir) == before
    assert [h.get("status") for h in versions(patient, dossier.plain)] == [v.APPROVED]
    assert status(own_uuid, v.APPROVED, v.ARCHIVED).status == "Success"
    deleted = status(own_uuid, v.ARCHIVED, v.DELETED)
    assert deleted.status == "Success", deleted.errors
    assert own.unique_id not in found(patient, dossier.patient_id, v.APPROVED, v.ARCHIVED)


@pytest.mark.parametrize(
    ("vihf", "says"),
    [
        # a patient role from the institution, which is no patient portal
        ({"structure_id": "10B0999991", "signer": "institution"}, "patient portal"),
        # the patient of another record
        ({"name_id": "1234567890123"}, "Subject NameID"),
    ],
    ids=["not-a-portal", "another-patient"],
)
def test_forged_patient_vihfs_are_refused(client_for, dossier, engine, server, vihf, says):
    """Who may say that the patient calls is security's question: a SOAP fault, not data."""
    before = snapshot(engine, server.store_dir)
    forged = as_(client_for, dossier, "patient", **vihf)
    with pytest.raises(SoapFaultError) as caught:
        forged.stored_query(
            v.FIND_DOCUMENTS,
            {
                "$XDSDocumentEntryPatientId": dossier.patient_id,
                "$XDSDocumentEntryStatus": [v.APPROVED],
            },
        )
    assert caught.value.fault.subcode == f"{{{WSSE}}}FailedAuthentication"
    assert says in caught.value.fault.reason
    with pytest.raises(SoapFaultError):
        forged.update(
            status_update(
                dossier.patient_id,
                versions(as_(client_for, dossier), dossier.plain)[-1].get("id"),
                {"OriginalStatus": v.APPROVED, "NewStatus": v.DELETED},
            )
        )
    assert snapshot(engine, server.store_dir) == before


def test_the_patient_has_no_emergency_mode(client_for, dossier: Dossier) -> None:
    """An authentic patient VIHF in break-glass mode: the rights refuse it (no such column)."""
    patient = as_(client_for, dossier, "patient", access_mode="bris_de_glace")
    query = patient.stored_query(
        v.FIND_DOCUMENTS,
        {"$XDSDocumentEntryPatientId": dossier.patient_id, "$XDSDocumentEntryStatus": [v.APPROVED]},
    )
    assert "cannot act in bris_de_glace mode" in refused(query)
    assert query.objects == []
    read = patient.retrieve([(REPOSITORY_UNIQUE_ID, dossier.plain.unique_id)])
    assert read.documents == [] and read.error_codes == [DENIED]


# --- the operator's data files -------------------------------------------------------------


def test_an_operator_habilitation_matrix(
    database_url: str, tmp_path: Path, test_pki, engine: Engine
) -> None:
    """DMP_XDS_HABILITATIONS: here nurses may read discharge letters only; the physician
    reads everything."""
    rules = tmp_path / "habilitations.csv"
    rules.write_text(
        "profession,type_code,allowed\n*,*,oui\n60,*,non\n60,11490-0,oui\n", encoding="utf-8"
    )
    server = start_server(
        database_url,
        tmp_path / "server",
        {
            **test_pki.server_env(),
            "DMP_XDS_HABILITATIONS": str(rules),
        },
    )
    try:
        pid = new_patient_id()
        with engine.begin() as conn:
            open_record(conn, pid, authorised=("medecin", "infirmier"))
        letter = Doc(b"lettre de sortie")
        report = Doc(
            b"compte rendu d'imagerie",
            type_code=("18748-4", "2.16.840.1.113883.6.1", "Compte rendu d'imagerie"),
        )

        def client(who: str) -> XdsClient:
            headers = test_pki.vihf_headers(pid, who, authentication_mode="INDIRECTE_RENFORCEE")
            return schema_checked(XdsClient(server.url, header_factory=headers))

        stored = client("medecin").provide_and_register(
            submit_objects_request(pid, [letter, report]),
            {"Document01": letter.content, "Document02": report.content},
        )
        assert stored.status == "Success", stored.errors
        assert found(client("medecin"), pid) == {letter.unique_id, report.unique_id}
        assert found(client("infirmier"), pid) == {letter.unique_id}
        assert not retrieved(client("infirmier"), report)
    finally:
        stop_server(server)


def test_a_malformed_rights_matrix_stops_the_server(
    database_url: str, tmp_path: Path, test_pki
) -> None:
    matrix = tmp_path / "matrix.csv"
    matrix.write_text("action,ps_normal\nTD2.1,peut-etre\n", encoding="utf-8")
    with pytest.raises(RuntimeError) as caught:
        start_server(
            database_url,
            tmp_path / "server",
            {**test_pki.server_env(), "DMP_XDS_RIGHTS_MATRIX": str(matrix)},
        )
    assert "rights matrix" in str(caught.value)
