"""``dmp-xds load-synthetic``: fill the registry with made-up but consistent records, fast.

Why: the scale targets of issue 7 (ITI-18 on a registry of millions of documents) can only be
measured on a registry of that size, and submitting millions of documents through ITI-41 would
take hours. This loader writes the very rows that ITI-41/42 would have written (patient,
submission_set, document_entry, association, object_locator, unique_id_locator), with stored
LeafClass fragments in the shape ``register.fragment`` produces, through PostgreSQL ``COPY``
(the fastest path psycopg2 offers: research-notes/stack.md 5.2).

Each document gets its own fragment rendered from one template with its own entryUUID,
uniqueId, patient, times, codes and author, and the typed columns hold exactly what
``register.document_row`` would derive from that fragment, so every stored query answers over
loaded rows as over submitted ones. There are no document bytes: ``content_sha256`` is NULL
(ITI-43 of a synthetic document answers XDSMissingDocument; the registry side is what is
measured here).

The load commits one chunk of patients at a time (a crash leaves whole patients, never half
of one) with ``synchronous_commit = off`` for its own session only: a synthetic load loses
nothing that matters if the last chunks are lost in a crash. ANALYZE runs at the end so that
the planner sees the new distribution at once.
"""

from __future__ import annotations

import io
import random
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from sqlalchemy import Engine

from ..metadata import vocabulary as v

INS_OID = "1.2.250.1.213.1.4.10"
# Made-up arc for synthetic uniqueIds (the tests use 1.2.250.1.999.7).
UNIQUE_ID_ROOT = "1.2.250.1.999.9"
REPOSITORY_UNIQUE_ID = "1.2.250.1.999.1.1.1"
SOURCE_ID = "1.2.250.1.999.1.1.7898"

_CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
_TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
_FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
_CONF = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
_FACILITY = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
_PRACTICE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
_EVENT = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
_DOC_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
_DOC_PID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
_DOC_UID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
_SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
_SS_CONTENT = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
_SS_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
_SS_PID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
_SS_SRC = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
_SS_UID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
_NS = (
    'xmlns="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0" '
    'xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"'
)

# (class, type, display of type) combinations seen in a DMP, with a plausible format.
_KINDS: tuple[tuple[tuple[str, str, str], tuple[str, str, str], tuple[str, str, str]], ...] = (
    (
        ("10", "1.2.250.1.213.1.1.4.1", "Compte rendu"),
        ("11490-0", "2.16.840.1.113883.6.1", "Lettre de sortie"),
        ("urn:ihe:iti:xds-sd:text:2008", "1.3.6.1.4.1.19376.1.2.3", "Document non structuré"),
    ),
    (
        ("10", "1.2.250.1.213.1.1.4.1", "Compte rendu"),
        ("11502-2", "2.16.840.1.113883.6.1", "CR d'examens biologiques"),
        ("urn:ihe:lab:xd-lab:2008", "1.3.6.1.4.1.19376.1.2.3", "CR d'examens biologiques"),
    ),
    (
        ("11", "1.2.250.1.213.1.1.4.1", "Imagerie médicale"),
        ("18748-4", "2.16.840.1.113883.6.1", "CR d'imagerie médicale"),
        ("urn:ihe:rad:TEXT", "1.3.6.1.4.1.19376.1.2.3", "CR d'imagerie"),
    ),
    (
        ("50", "1.2.250.1.213.1.1.4.1", "Synthèse"),
        ("60591-5", "2.16.840.1.113883.6.1", "Synthèse médicale"),
        ("urn:asip:ci-sis:vsm:2012", "1.2.250.1.213.1.1.4.2.282", "Volet de synthèse médicale"),
    ),
    (
        ("20", "1.2.250.1.213.1.1.4.1", "Prescription"),
        ("57833-6", "2.16.840.1.113883.6.1", "Prescription de médicaments"),
        ("urn:ihe:pharm:pre:2010", "1.3.6.1.4.1.19376.1.2.3", "Prescription"),
    ),
)
_EVENTS = (
    ("I10", "2.16.840.1.113883.6.3", "Hypertension essentielle"),
    ("E11", "2.16.840.1.113883.6.3", "Diabète de type 2"),
    ("J45", "2.16.840.1.113883.6.3", "Asthme"),
)
_CONFIDENTIALITY = ("N", "2.16.840.1.113883.5.25", "Normal")
_FACILITY_CODE = ("SA01", "1.2.250.1.71.4.2.4", "Etablissement public de santé")
_PRACTICE_CODE = ("ETABLISSEMENT", "1.2.250.1.213.1.1.4.9", "Etablissement de santé")
_CONTENT_TYPE = ("04", "1.2.250.1.213.2.2", "Hospitalisation de jour")


@dataclass
class LoadReport:
    """What a load wrote, how fast, and which identifiers a benchmark can ask for."""

    patients: int = 0
    documents: int = 0
    submission_sets: int = 0
    rows: int = 0
    seconds: float = 0.0
    analyze_seconds: float = 0.0
    # Patients with exactly ``heavy_documents`` documents (FindDocuments' worst common case).
    heavy_patient_ids: list[str] = field(default_factory=list)
    # A random sample of (patient id, document uniqueId) pairs, for GetDocuments.
    sample_documents: list[tuple[str, str]] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def _stored(xml: str) -> str:
    """A fragment in the form ``register.fragment`` stores: ASCII, other characters as
    character references."""
    return xml.encode("ascii", "xmlcharrefreplace").decode("ascii")


def _slot(name: str, *values: str) -> str:
    vals = "".join(f"<Value>{escape(x)}</Value>" for x in values)
    return f'<Slot name="{name}"><ValueList>{vals}</ValueList></Slot>'


def _code(scheme: str, obj: str, cid: str, code: tuple[str, str, str]) -> str:
    value, coding_scheme, display = code
    return (
        f'<Classification classificationScheme="{scheme}" classifiedObject="{obj}" '
        f"id={quoteattr(cid)} nodeRepresentation={quoteattr(value)}>"
        f"{_slot('codingScheme', coding_scheme)}"
        f"<Name><LocalizedString value={quoteattr(display)}/></Name></Classification>"
    )


def _ext(scheme: str, obj: str, eid: str, value: str, name: str) -> str:
    return (
        f'<ExternalIdentifier id="{eid}" identificationScheme="{scheme}" '
        f"registryObject={quoteattr(obj)} value={quoteattr(value)}>"
        f"<Name><LocalizedString value={quoteattr(name)}/></Name></ExternalIdentifier>"
    )


def _key(code: tuple[str, str, str]) -> str:
    """The ``code^^scheme`` form the typed columns hold (``Code.key``)."""
    return f"{code[0]}^^{code[1]}"


def _pg_array(values: Sequence[str]) -> str:
    """A text[] literal in COPY text form; our values hold no quote, backslash or control."""
    return "{" + ",".join(f'"{x}"' for x in values) + "}"


class _Ids:
    """Unique UUIDs without the cost of ``uuid4()`` per id: one random 80-bit prefix per load
    and a counter (a load renders about 17 ids per document)."""

    def __init__(self) -> None:
        r = secrets.token_hex(10)
        self._prefix = f"{r[:8]}-{r[8:12]}-4{r[12:15]}-8{r[15:18]}-{r[18:20]}"
        self._n = 0

    def __call__(self) -> str:
        self._n += 1
        return f"{self._prefix}{self._n:010x}"


def _dtm(rng: random.Random) -> str:
    """A creation time between 2010 and 2026 (14 digits, as dtm_key stores it)."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(rng.randint(1_262_304_000, 1_767_225_600)))


class _Writer:
    """Renders the rows of one chunk of patients into one COPY buffer per table."""

    def __init__(self, ids: _Ids, rng: random.Random, run: str) -> None:
        self.ids, self.rng, self.run = ids, rng, run
        self.seq = 0
        self.authors = [
            f"8{rng.randint(10**9, 10**10 - 1):011d}^AUTEUR{i}^PRENOM{i}^^^^^^"
            "&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
            for i in range(500)
        ]
        self.reset()

    def reset(self) -> None:
        self.buffers = {
            name: io.StringIO()
            for name in (
                "submission_set",
                "document_entry",
                "association",
                "object_locator",
                "unique_id_locator",
            )
        }
        self.rows = 0

    def unique_id(self) -> str:
        self.seq += 1
        return f"{UNIQUE_ID_ROOT}.{self.run}.{self.seq}"

    def patient(
        self, key: int, patient_id: str, n_docs: int, per_submission: int, sample: list
    ) -> None:
        done = 0
        while done < n_docs:
            size = min(n_docs - done, self.rng.randint(1, per_submission))
            self._submission(key, patient_id, size, sample)
            done += size

    def _submission(self, key: int, patient_id: str, size: int, sample: list) -> None:
        ids, rng, b = self.ids, self.rng, self.buffers
        ss = f"urn:uuid:{ids()}"
        ss_uid = self.unique_id()
        submitted = _dtm(rng)
        author = rng.choice(self.authors)
        ss_xml = _stored(
            f'<RegistryPackage {_NS} id="{ss}">'
            + _slot("submissionTime", submitted)
            + '<Name><LocalizedString value="Lot synthétique"/></Name>'
            + f'<Classification classificationScheme="{_SS_AUTHOR}" classifiedObject="{ss}" '
            f'id="urn:uuid:{ids()}" nodeRepresentation="">'
            + _slot("authorPerson", author)
            + "</Classification>"
            + _code(_SS_CONTENT, ss, f"urn:uuid:{ids()}", _CONTENT_TYPE)
            + f'<Classification classificationNode="{_SS_NODE}" classifiedObject="{ss}" '
            f'id="urn:uuid:{ids()}"/>'
            + _ext(_SS_PID, ss, f"urn:uuid:{ids()}", patient_id, "XDSSubmissionSet.patientId")
            + _ext(_SS_SRC, ss, f"urn:uuid:{ids()}", SOURCE_ID, "XDSSubmissionSet.sourceId")
            + _ext(_SS_UID, ss, f"urn:uuid:{ids()}", ss_uid, "XDSSubmissionSet.uniqueId")
            + "</RegistryPackage>"
        )
        b["submission_set"].write(
            f"{key}\t{ss[9:]}\t{ss_uid}\t{SOURCE_ID}\t{v.APPROVED}\t{submitted}\t"
            f"{_key(_CONTENT_TYPE)}\t{_pg_array([author])}\t{ss_xml}\n"
        )
        b["object_locator"].write(f"{ss[9:]}\t{key}\tSubmissionSet\n")
        b["unique_id_locator"].write(f"SubmissionSet\t{ss_uid}\t{key}\n")
        self.rows += 3
        for _ in range(size):
            doc = self._document(key, patient_id, author, submitted, sample)
            assoc = ids()
            assoc_xml = (
                f'<Association {_NS} associationType="{v.HAS_MEMBER}" id="urn:uuid:{assoc}" '
                f'sourceObject="{ss}" targetObject="{doc}">'
                + _slot("SubmissionSetStatus", "Original")
                + "</Association>"
            )
            b["association"].write(
                f"{key}\t{assoc}\t{v.HAS_MEMBER}\t{ss[9:]}\t{doc[9:]}\t{v.APPROVED}\t{assoc_xml}\n"
            )
            b["object_locator"].write(f"{assoc}\t{key}\tAssociation\n")
            self.rows += 2

    def _document(
        self, key: int, patient_id: str, author: str, submitted: str, sample: list
    ) -> str:
        ids, rng, b = self.ids, self.rng, self.buffers
        doc = f"urn:uuid:{ids()}"
        uid = self.unique_id()
        class_code, type_code, format_code = rng.choice(_KINDS)
        events = rng.sample(_EVENTS, rng.choice((0, 0, 1, 2)))
        created = _dtm(rng)
        start, stop = created[:8] + "080000", created[:8] + "090000"
        sha1 = secrets.token_hex(20)
        size = rng.randint(2_000, 60_000)
        title = f"Document {self.seq}"
        xml = _stored(
            f'<ExtrinsicObject {_NS} id="{doc}" mimeType="text/xml" '
            f'objectType="{v.STABLE_DOCUMENT}" lid="{doc}">'
            + _slot("creationTime", created)
            + _slot("languageCode", "fr-FR")
            + _slot("sourcePatientId", f"{self.seq}^^^&1.2.250.1.999.1.1.7898.2&ISO^PI")
            + _slot("sourcePatientInfo", "PID-5|SYNTHETIQUE^PATIENT^^^^^L", "PID-7|19700101")
            + _slot("serviceStartTime", start)
            + _slot("serviceStopTime", stop)
            + _slot("hash", sha1)
            + _slot("size", str(size))
            + _slot("repositoryUniqueId", REPOSITORY_UNIQUE_ID)
            + f"<Name><LocalizedString value={quoteattr(title)}/></Name>"
            + '<VersionInfo versionName="1"/>'
            + f'<Classification classificationScheme="{_DOC_AUTHOR}" classifiedObject="{doc}" '
            f'id="urn:uuid:{ids()}" nodeRepresentation="">'
            + _slot("authorPerson", author)
            + _slot("authorInstitution", "CHU SYNTHETIQUE^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1999")
            + _slot("authorSpecialty", "SM26^Médecine générale^1.2.250.1.213.1.1.4.5")
            + "</Classification>"
            + _code(_CLASS, doc, f"urn:uuid:{ids()}", class_code)
            + _code(_CONF, doc, f"urn:uuid:{ids()}", _CONFIDENTIALITY)
            + "".join(_code(_EVENT, doc, f"urn:uuid:{ids()}", e) for e in events)
            + _code(_FORMAT, doc, f"urn:uuid:{ids()}", format_code)
            + _code(_FACILITY, doc, f"urn:uuid:{ids()}", _FACILITY_CODE)
            + _code(_PRACTICE, doc, f"urn:uuid:{ids()}", _PRACTICE_CODE)
            + _code(_TYPE, doc, f"urn:uuid:{ids()}", type_code)
            + _ext(_DOC_PID, doc, f"urn:uuid:{ids()}", patient_id, "XDSDocumentEntry.patientId")
            + _ext(_DOC_UID, doc, f"urn:uuid:{ids()}", uid, "XDSDocumentEntry.uniqueId")
            + "</ExtrinsicObject>"
        )
        # Columns in _COLUMNS["document_entry"] order; \N is COPY's NULL.
        b["document_entry"].write(
            "\t".join(
                (
                    str(key),
                    doc[9:],
                    doc[9:],
                    "1",
                    uid,
                    v.APPROVED,
                    v.STABLE_DOCUMENT,
                    "text/xml",
                    _key(class_code),
                    _key(type_code),
                    _key(format_code),
                    _key(_FACILITY_CODE),
                    _key(_PRACTICE_CODE),
                    _pg_array([_key(_CONFIDENTIALITY)]),
                    _pg_array([_key(e) for e in events]),
                    _pg_array([author]),
                    created,
                    start,
                    stop,
                    sha1,
                    str(size),
                    REPOSITORY_UNIQUE_ID,
                    "\\N",
                    "{}",
                    "\\N",
                    xml,
                )
            )
            + "\n"
        )
        b["object_locator"].write(f"{doc[9:]}\t{key}\tDocumentEntry\n")
        b["unique_id_locator"].write(f"DocumentEntry\t{uid}\t{key}\n")
        self.rows += 3
        if rng.random() < 0.01:
            sample.append((patient_id, uid))
        return doc


# An open record with consent, and an authorisation of a professional (COPY text rows after
# the patient key, and after the key and the professional's id).
_RECORD_COLUMNS = (
    "patient_key, status, created_at, consent_at, updated_at, other_ids, telecoms, addresses, "
    "relationships, opposition_bris_de_glace, opposition_acces_urgence, internet_account, "
    "ens_attached"
)
_RECORD_ROW = "open\tnow\tnow\tnow\t[]\t[]\t[]\t[]\tf\tf\tf\tf\n"
_AUTHORISATION_COLUMNS = (
    "patient_key, actor_id, actor_type, id_type, status, medecin_traitant, specialities, "
    "speciality_labels, started_at, last_action_at"
)
_AUTHORISATION_ROW = "professional\t1.2.250.1.71.4.2.1\tauthorised\tf\t{}\t{}\tnow\tnow\n"

_COLUMNS = {
    "submission_set": (
        "patient_key, entry_uuid, unique_id, source_id, status, submission_time, "
        "content_type_code, author_persons, ebrim"
    ),
    "document_entry": (
        "patient_key, entry_uuid, logical_id, version, unique_id, status, object_type, "
        "mime_type, class_code, type_code, format_code, facility_code, practice_code, "
        "confidentiality_codes, event_codes, author_persons, creation_time, "
        "service_start_time, service_stop_time, hash_sha1, size, repository_unique_id, "
        "content_sha256, reference_ids, availability, ebrim"
    ),
    "association": (
        "patient_key, entry_uuid, association_type, source_uuid, target_uuid, status, ebrim"
    ),
    "object_locator": "entry_uuid, patient_key, kind",
    "unique_id_locator": "kind, unique_id, patient_key",
}


def copy_rows(cursor: object, table: str, columns: str, buffer: io.StringIO) -> None:
    """COPY text rows into ``table``: the one place that knows the driver's COPY API
    (psycopg2 ``copy_expert``; psycopg 3 would be ``cursor.copy``)."""
    buffer.seek(0)
    cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buffer)  # type: ignore[attr-defined]


def document_counts(
    documents: int, patients: int, heavy_patients: int, heavy_documents: int, rng: random.Random
) -> list[int]:
    """Documents per patient: ``heavy_patients`` with exactly ``heavy_documents`` each, the
    rest spread over the others around their mean (at least one each)."""
    if patients < 1 or documents < patients:
        raise ValueError("need at least one patient and one document per patient")
    heavy_patients = min(heavy_patients, patients - 1 if patients > 1 else 1)
    while heavy_patients and heavy_patients * heavy_documents + (patients - heavy_patients) > (
        documents
    ):
        heavy_patients -= 1
    counts = [heavy_documents] * heavy_patients
    others = patients - heavy_patients
    if not others:
        counts[-1] += documents - sum(counts)
        return counts
    rest = documents - heavy_documents * heavy_patients
    base, extra = divmod(rest, others)
    normal = [base + (1 if i < extra else 0) for i in range(others)]
    # Spread around the mean (some records are thin, some thick), keeping the total.
    for i in range(others):
        j = rng.randrange(others)
        move = rng.randint(0, normal[i] - 1) // 2
        normal[i] -= move
        normal[j] += move
    return counts + normal


def _chunks(counts: list[int], chunk_documents: int) -> Iterator[list[int]]:
    """Consecutive patient indexes grouped so that each group holds about
    ``chunk_documents`` documents."""
    group: list[int] = []
    total = 0
    for i, n in enumerate(counts):
        group.append(i)
        total += n
        if total >= chunk_documents:
            yield group
            group, total = [], 0
    if group:
        yield group


def load_synthetic(
    engine: Engine,
    documents: int,
    patients: int,
    *,
    heavy_patients: int | None = None,
    heavy_documents: int = 50,
    per_submission: int = 2,
    chunk_documents: int = 20_000,
    seed: int | None = None,
    analyze: bool = True,
    progress: bool = False,
    authorise: Sequence[str] = (),
) -> LoadReport:
    """Add ``patients`` new patients holding ``documents`` documents in all.

    ``heavy_patients`` (default: one patient in 50) get exactly ``heavy_documents``
    documents each; submissions hold 1 to ``per_submission`` documents. Every patient gets an
    open DMP record, on which the professionals of ``authorise`` (national ids, the VIHF
    NameID) are authorised: the XDS endpoints serve nothing else (patients/gate.py).
    """
    rng = random.Random(seed)  # noqa: S311 - made-up data, reproducible from a seed
    if heavy_patients is None:
        heavy_patients = max(1, patients // 50)
    counts = document_counts(documents, patients, heavy_patients, heavy_documents, rng)
    run = str(rng.randint(10**8, 10**9 - 1))
    writer = _Writer(_Ids(), rng, run)
    report = LoadReport()
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        with dbapi.cursor() as cur:  # type: ignore[union-attr]
            for group in _chunks(counts, chunk_documents):
                cur.execute("SET LOCAL synchronous_commit = off")
                # Keys from the sequence, so that concurrent patient creation cannot clash.
                cur.execute(
                    "SELECT nextval('patient_patient_key_seq') FROM generate_series(1, %s)",
                    (len(group),),
                )
                keys = [r[0] for r in cur.fetchall()]
                patient_rows = io.StringIO()
                record_rows, authorisation_rows = io.StringIO(), io.StringIO()
                writer.reset()
                sample: list[tuple[str, str]] = []
                for i, key in zip(group, keys, strict=True):
                    # 13 digits (up to a million patients): 7 from the run, 6 from the index.
                    patient_id = f"{run[:7]}{i:06d}^^^&{INS_OID}&ISO"
                    patient_rows.write(f"{key}\t{patient_id}\n")
                    record_rows.write(f"{key}\t{_RECORD_ROW}")
                    for person in authorise:
                        authorisation_rows.write(f"{key}\t{person}\t{_AUTHORISATION_ROW}")
                    writer.patient(key, patient_id, counts[i], per_submission, sample)
                    if counts[i] == heavy_documents and i < heavy_patients:
                        report.heavy_patient_ids.append(patient_id)
                copy_rows(cur, "patient", "patient_key, patient_id", patient_rows)
                copy_rows(cur, "dmp_record", _RECORD_COLUMNS, record_rows)
                copy_rows(cur, "dmp_authorisation", _AUTHORISATION_COLUMNS, authorisation_rows)
                for table, buffer in writer.buffers.items():
                    copy_rows(cur, table, _COLUMNS[table], buffer)
                dbapi.commit()  # type: ignore[union-attr]
                report.patients += len(group)
                report.documents += sum(counts[i] for i in group)
                report.rows += writer.rows + len(group) * (2 + len(authorise))
                report.sample_documents += sample
                if progress:
                    elapsed = time.perf_counter() - started
                    print(
                        f"  {report.documents} documents, {report.rows} rows, "
                        f"{report.rows / elapsed:,.0f} rows/s",
                        flush=True,
                    )
            report.submission_sets = writer.seq - report.documents
            report.seconds = time.perf_counter() - started
            if analyze:
                analyzed = time.perf_counter()
                dbapi.autocommit = True  # type: ignore[union-attr]
                cur.execute(
                    "ANALYZE patient, submission_set, document_entry, association, "
                    "object_locator, unique_id_locator, dmp_record, dmp_authorisation"
                )
                dbapi.autocommit = False  # type: ignore[union-attr]
                report.analyze_seconds = time.perf_counter() - analyzed
    except BaseException:
        raw.driver_connection.rollback()  # type: ignore[union-attr]
        raise
    finally:
        raw.close()
    return report
