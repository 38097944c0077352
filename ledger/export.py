"""Copies of the audit trail for review: JSON Lines and CDISC ODM 1.3.2 XML, for the whole trial
or one subject, optionally as known at a past moment.

JSON Lines: one line per stored event in log order, with its notification id, entry id, the
SHA-256 of its stored bytes (`hash`), its envelope (who, when, why, `prev_hash`) and its values.
`envelope` and `values` together are exactly the stored JSON object, so anyone can recompute
`hash` (keys sorted, no whitespace, UTF-8) and follow the chain. Password hashes are replaced by
"[redacted]" and the line says so: an audit copy must not carry material for guessing passwords.

ODM: a Transactional file. Every ledger event is one `SubjectData` transaction, in the order
recorded: an entry inserts a `StudyEventData` (event type, repeat key = entry number) whose
`AuditRecord` names who (`UserRef`), where (`LocationRef`: the subject's site), when
(`DateTimeStamp`), and the ledger entry (`SourceID`); a correction updates the changed `ItemData`,
each with an `AuditRecord` carrying the `ReasonForChange`; a retraction removes the study event
with its reason; a signature is a `Signature` (meaning in `SignatureDef`) with an annotation
naming the chain-head digest it binds; each query step and source data verification is an
`Annotation` (its `Comment` says who asked or answered what) of the entry it is about. The
old value stays in the earlier transaction, so the file holds both values of every change.
Trial administration (grants, locks, seals) is not clinical data and is in the JSON Lines
export only.
"""

from __future__ import annotations

import hashlib
import re
import sys
import types
import typing
from collections.abc import Iterator
from datetime import date, datetime
from typing import IO, Any

import orjson

from m22bol.domain import events as e
from m22bol.domain.errors import BadInput, IntegrityFailure
from m22bol.domain.patient import patient_id
from m22bol.domain.trial import TRIAL_ID, project_trial

# The stored object also names its event type (ledger/store.py), which the hash covers.
ENVELOPE = (*e.Event.model_fields, "event_type")
REDACTED = {e.PasswordSet: ("password_hash",)}
# Trial events an ODM export of the whole trial carries as audit records of the trial.
SECURITY_EVENTS = (e.AuthenticationFailed,)
MEANINGS = {
    "reviewed": "Reviewed: the investigator has reviewed the subject's records",
    "approved": "Approved: the investigator approves the subject's records as accurate",
}
LEGAL_REASON = ("Electronic signature under 21 CFR Part 11 (11.50, 11.70, 11.200): signer, time "
                "and meaning recorded, bound to the digest of the records signed")


def stored_events(ledger, *, subject: str | None = None,
                  known_at: datetime | None = None) -> Iterator[tuple[int, str, dict, e.Event]]:
    """(notification id, hash of the stored bytes, the stored JSON object, the event), in log
    order; only the subject's events when one is named, only those recorded by `known_at`."""
    from m22bol.ledger.integrity import _event_classes

    target = None
    if subject is not None:
        if ledger.patient(subject) is None:
            raise BadInput(f"subject: {subject} is not registered", field="subject")
        target = patient_id(subject)
    known = _event_classes()
    last = 0
    while True:
        page = ledger.recorder.select_notifications(last, 1000, inclusive_of_start=False)
        for n in page:
            if target is not None and n.originator_id != target:
                continue
            try:
                if n.topic not in known:
                    raise ValueError(n.topic)
                event = ledger.mapper.to_domain_event(n)
                state = ledger.mapper.transcoder.decode(n.state)  # bare NaN too
            except Exception:
                raise IntegrityFailure(
                    f"the stored event at log position {n.id} does not decode; run "
                    "`m22bol audit verify`", rule="export.undecodable") from None
            if known_at is None or event.recorded_at <= known_at:
                yield n.id, hashlib.sha256(n.state).hexdigest(), state, event
        if len(page) < 1000:
            return
        last = page[-1].id


def _output(out: str) -> IO[bytes]:
    if out == "-":
        return sys.stdout.buffer
    try:
        return open(out, "wb")  # noqa: SIM115 (closed by the caller)
    except OSError as exc:
        raise BadInput(f"out: cannot write {out}: {exc.strerror}", field="out") from None


# --- JSON Lines -------------------------------------------------------------------------------


def export_jsonl(ledger, out: str, *, subject: str | None = None,
                 known_at: datetime | None = None) -> dict[str, Any]:
    lines = list(_jsonl(ledger, subject=subject, known_at=known_at))
    if subject is not None and not lines:
        raise BadInput(f"subject: {subject} was not registered at {known_at}", field="subject")
    stream = _output(out)
    try:
        for line in lines:
            stream.write(line + b"\n")
    finally:
        if stream is not sys.stdout.buffer:
            stream.close()
    return {"format": "jsonl", "out": out, "events": len(lines), "subject": subject,
            "known_at": known_at.isoformat() if known_at else None,
            "synthetic": ledger.require_trial().synthetic}


def _jsonl(ledger, *, subject: str | None, known_at: datetime | None) -> Iterator[bytes]:
    names: dict[Any, str] = {TRIAL_ID: "trial"}
    for nid, digest, state, event in stored_events(ledger, subject=subject, known_at=known_at):
        if isinstance(event, e.Registered):
            names[event.originator_id] = event.subject
        owner = names.get(event.originator_id, str(event.originator_id))
        redacted = [k for k in REDACTED.get(type(event), ()) if k in state]
        values = {k: ("[redacted]" if k in redacted else v) for k, v in state.items()
                  if k not in ENVELOPE}
        record = {
            "notification_id": nid,
            "entry": f"{owner}#{event.originator_version}",
            "subject": None if event.originator_id == TRIAL_ID else owner,
            "event": type(event).__name__,
            "hash": digest,
            "envelope": {k: state.get(k) for k in ENVELOPE},
            "values": values,
        }
        if redacted:
            record["redacted"] = redacted
        yield orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


# --- ODM 1.3.2 --------------------------------------------------------------------------------


def export_odm(ledger, out: str, *, subject: str | None = None,
               known_at: datetime | None = None) -> dict[str, Any]:
    document, count = build_odm(ledger, subject=subject, known_at=known_at)
    stream = _output(out)
    try:
        stream.write(document.encode("utf-8"))
    finally:
        if stream is not sys.stdout.buffer:
            stream.close()
    return {"format": "odm", "out": out, "events": count, "subject": subject,
            "known_at": known_at.isoformat() if known_at else None,
            "synthetic": ledger.require_trial().synthetic}


def build_odm(ledger, *, subject: str | None = None,
              known_at: datetime | None = None) -> tuple[str, int]:
    """The ODM 1.3.2 document (text) and the number of subject events in it."""
    import odmlib.odm_1_3_2.model as odm  # about 0.15 s: only exports pay for it

    rows = list(stored_events(ledger, subject=subject, known_at=known_at))
    trial_events = [ev for _, _, _, ev in rows if ev.originator_id == TRIAL_ID]
    if subject is not None:
        trial_events = [ev for ev in ledger.require_trial(whole=True).events
                        if known_at is None or ev.recorded_at <= known_at]
    trial = project_trial(None, trial_events)
    if trial is None:
        raise BadInput("ledger: nothing recorded at that time", field="known_at")
    if subject is not None and not rows:
        raise BadInput(f"subject: {subject} was not registered at {known_at}", field="subject")
    builder = _OdmBuilder(odm, trial, trial_events[0])
    count = 0
    for _, _, _, event in rows:
        if event.originator_id != TRIAL_ID:
            builder.add(event)
            count += 1
    security = [ev for ev in trial_events if isinstance(ev, SECURITY_EVENTS)]
    if subject is None and security:
        # Refused authentications belong to no subject: they are audit records of the trial.
        builder.clinical.AuditRecords.append(odm.AuditRecords(
            AuditRecord=[builder.security_record(ev) for ev in security]))
    now = ledger.clock()
    scope = f"subject.{subject}" if subject else "trial"
    root = odm.ODM(
        FileOID=f"{trial.name}.audit.{scope}.{now.strftime('%Y%m%dT%H%M%S%fZ')}",
        FileType="Transactional", Granularity="SingleSubject" if subject else "All",
        CreationDateTime=now.isoformat(), ODMVersion="1.3.2", SourceSystem="m22bol",
        Description=("SYNTHETIC DEMO DATA, not a trial record. " if trial.synthetic else "")
        + f"Audit trail of the {trial.name} ledger" + (
            f" for subject {subject}" if subject else ""),
        AsOfDateTime=(known_at or now).isoformat(),
    )
    root.Study.append(builder.study())
    root.AdminData.append(builder.admin())
    root.ClinicalData.append(builder.clinical)
    return printable_xml(root.to_xml_string(xml_declaration=True)), count


# What XML 1.0 forbids (C0 controls but tab, newline and carriage return; lone surrogates;
# U+FFFE, U+FFFF), and what it allows but a reader must not be shown raw (DEL, C1 controls, the
# bidirectional embeddings, overrides and isolates). Today's entries refuse all of them, but
# text an older version stored may hold any: it is written as a visible [U+XXXX].
_NOT_FOR_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e"
                          "\u2066-\u2069\ud800-\udfff\ufffe\uffff]")


def printable_xml(document: str) -> str:
    """The document with every character of `_NOT_FOR_XML` replaced by [U+XXXX], so that it
    stays well-formed (and valid) whatever stored text it carries. The markup itself is ASCII
    and whitespace, so only stored text is touched."""
    return _NOT_FOR_XML.sub(lambda found: f"[U+{ord(found.group()):04X}]", document)


def _datatype(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _datatype(args[0])
    if annotation is bool:
        return "boolean"
    if annotation is int:
        return "integer"
    if annotation is float:
        return "float"
    if annotation is date:
        return "date"
    if annotation is datetime:
        return "datetime"
    return "text"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return str(value)


# The location of trial-level records, which belong to no site.
LEDGER_LOCATION = "ledger"


class _OdmBuilder:
    """Collects the metadata the transactions use while it writes them, so the document defines
    exactly the events, items, users and sites it references."""

    def __init__(self, odm, trial, first: e.Event):
        self.odm = odm
        self.trial = trial
        self.effective = first.recorded_at.date().isoformat()
        self.study_oid = f"ST.{trial.name}"
        self.mdv_oid = f"MDV.{trial.name}"
        self.clinical = odm.ClinicalData(StudyOID=self.study_oid, MetaDataVersionOID=self.mdv_oid)
        self.classes: dict[str, type[e.Fact]] = {}
        self.users: set[str] = set()
        self.sites: set[str] = set()
        self.meanings: set[str] = set()
        self.subjects: dict[Any, tuple[str, str]] = {}  # aggregate -> (subject, site)
        self.entries: dict[tuple[Any, int], e.Fact] = {}
        self.query_entries: dict[str, str] = {}  # query id -> the entry it is about

    # --- transactions

    def add(self, event: e.Event) -> None:
        odm = self.odm
        if isinstance(event, e.Registered):
            self.subjects[event.originator_id] = (event.subject, event.site)
            self.sites.add(event.site)
        subject, site = self.subjects[event.originator_id]
        entry = f"{subject}#{event.originator_version}"
        self.users.add(event.actor)
        data = odm.SubjectData(SubjectKey=subject,
                               TransactionType="Insert" if isinstance(event, e.Registered)
                               else "Context")
        if isinstance(event, e.Registered):
            data.SiteRef = odm.SiteRef(LocationOID=self.location(site))
        if isinstance(event, e.EntryCorrected):
            data.StudyEventData.append(self.correction(event, entry, site))
        elif isinstance(event, e.EntryRetracted):
            target = self.entries[(event.originator_id, _version(event.entry))]
            name = type(target).__name__
            data.StudyEventData.append(odm.StudyEventData(
                StudyEventOID=f"SE.{name}", StudyEventRepeatKey=str(_version(event.entry)),
                TransactionType="Remove", AuditRecord=self.audit(event, entry, site)))
        elif isinstance(event, e.Signed):
            self.meanings.add(event.meaning)
            data.AuditRecord = self.audit(event, entry, site)
            data.Signature = odm.Signature(
                ID=f"SIG.{subject}.{event.originator_version}",
                UserRef=odm.UserRef(UserOID=self.user(event.actor)),
                LocationRef=odm.LocationRef(LocationOID=self.location(site)),
                SignatureRef=odm.SignatureRef(SignatureOID=f"SD.{event.meaning}"),
                DateTimeStamp=odm.DateTimeStamp(_content=event.recorded_at.isoformat()))
            data.Annotation.append(odm.Annotation(SeqNum=1, Comment=odm.Comment(
                _content=f"{event.meaning}: signs {subject}#1 to {subject}#"
                f"{event.covers_version}; chain head SHA-256 {event.head_digest}")))
        elif isinstance(event, e.Fact):
            self.entries[(event.originator_id, event.originator_version)] = event
            data.StudyEventData.append(self.insertion(event, entry, site))
        elif isinstance(event, _ANNOTATED):
            data.StudyEventData.append(self.annotation(event, entry, site))
        else:
            return  # no other event lives in a subject's chain
        self.clinical.SubjectData.append(data)

    def insertion(self, event: e.Fact, entry: str, site: str):
        odm = self.odm
        name = type(event).__name__
        self.classes[name] = type(event)
        group = odm.ItemGroupData(ItemGroupOID=f"IG.{name}")
        for key, value in self.items(event).items():
            if value is not None and value != [] and value != {}:
                group.ItemData.append(odm.ItemData(ItemOID=f"IT.{name}.{key}",
                                                   Value=_value(value)))
        form = odm.FormData(FormOID=f"F.{name}")
        form.ItemGroupData.append(group)
        study_event = odm.StudyEventData(
            StudyEventOID=f"SE.{name}", StudyEventRepeatKey=str(event.originator_version),
            TransactionType="Insert", AuditRecord=self.audit(event, entry, site, change=False))
        if event.source:
            study_event.Annotation.append(odm.Annotation(SeqNum=1, Comment=odm.Comment(
                _content=f"source document: {event.source}")))
        study_event.FormData.append(form)
        return study_event

    def annotation(self, event: e.Event, entry: str, site: str):
        """A query step or a verification, as an annotation of the entry it is about: ODM 1.3.2
        has no query or SDV element, and an `Annotation`'s `Comment` says who (sponsor or site)
        said what; the `AuditRecord` says who, when and which ledger entry."""
        odm = self.odm
        if isinstance(event, (e.QueryOpened, e.SourceVerified)):
            about = event.entry
            if isinstance(event, e.QueryOpened):
                self.query_entries[event.query_id] = about
        else:
            about = self.query_entries[event.query_id]
        target = self.entries[(event.originator_id, _version(about))]
        text, by = _annotation_text(event)
        study_event = odm.StudyEventData(
            StudyEventOID=f"SE.{type(target).__name__}", StudyEventRepeatKey=str(_version(about)),
            TransactionType="Context", AuditRecord=self.audit(event, entry, site, change=False))
        study_event.Annotation.append(odm.Annotation(
            SeqNum=1, TransactionType="Insert",
            Comment=odm.Comment(_content=text, SponsorOrSite=by)))
        return study_event

    def correction(self, event: e.EntryCorrected, entry: str, site: str):
        odm = self.odm
        number = _version(event.entry)
        target = self.entries[(event.originator_id, number)]
        name = type(target).__name__
        group = odm.ItemGroupData(ItemGroupOID=f"IG.{name}", TransactionType="Context")
        for key, value in event.changes.items():
            item = odm.ItemData(ItemOID=f"IT.{name}.{key}", AuditRecord=self.audit(event, entry,
                                                                                   site))
            if value is None:
                item.TransactionType = "Remove"
            else:
                item.TransactionType, item.Value = "Update", _value(value)
            group.ItemData.append(item)
        form = odm.FormData(FormOID=f"F.{name}", TransactionType="Context")
        form.ItemGroupData.append(group)
        study_event = odm.StudyEventData(StudyEventOID=f"SE.{name}",
                                         StudyEventRepeatKey=str(number),
                                         TransactionType="Context")
        study_event.FormData.append(form)
        return study_event

    def audit(self, event: e.Event, entry: str, site: str, *, change: bool = True):
        odm = self.odm
        record = odm.AuditRecord(
            UserRef=odm.UserRef(UserOID=self.user(event.actor)),
            LocationRef=odm.LocationRef(LocationOID=self.location(site)),
            DateTimeStamp=odm.DateTimeStamp(_content=event.recorded_at.isoformat()),
            SourceID=odm.SourceID(_content=entry),
        )
        # An entry's own reason (why treatment was interrupted) is one of its items; only a
        # change of the record has a reason for change.
        if change and event.reason:
            record.ReasonForChange = odm.ReasonForChange(_content=event.reason)
        return record

    @staticmethod
    def items(event: e.Fact) -> dict[str, Any]:
        values = event.model_dump(mode="json", exclude=set(ENVELOPE) - {"reason"})
        return values

    def user(self, actor: str) -> str:
        self.users.add(actor)
        return f"USR.{actor}"

    def security_record(self, event: e.AuthenticationFailed):
        """A refused authentication: who tried (the account) as whom, when, and what failed."""
        odm = self.odm
        entry = f"trial#{event.originator_version}"
        return odm.AuditRecord(
            ID=f"AR.trial.{event.originator_version}", EditPoint="DBAudit",
            UserRef=odm.UserRef(UserOID=self.user(event.actor)),
            LocationRef=odm.LocationRef(LocationOID=self.location(LEDGER_LOCATION)),
            DateTimeStamp=odm.DateTimeStamp(_content=event.recorded_at.isoformat()),
            ReasonForChange=odm.ReasonForChange(
                _content=f"security: failed {event.attempt} authentication as {event.user}: "
                         f"{event.message}"),
            SourceID=odm.SourceID(_content=entry),
        )

    def location(self, site: str) -> str:
        self.sites.add(site)
        return f"LOC.{site}"

    # --- definitions

    def study(self):
        odm = self.odm
        protocol = self.trial.protocol
        mdv = odm.MetaDataVersion(OID=self.mdv_oid, Name=f"{self.trial.name} ledger events",
                                  Description=f"Protocol version {protocol.version}")
        mdv.Protocol = odm.Protocol()
        for order, (name, cls) in enumerate(sorted(self.classes.items()), start=1):
            mdv.Protocol.StudyEventRef.append(odm.StudyEventRef(
                StudyEventOID=f"SE.{name}", OrderNumber=order, Mandatory="No"))
            mdv.StudyEventDef.append(odm.StudyEventDef(
                OID=f"SE.{name}", Name=name, Repeating="Yes", Type="Common",
                FormRef=[odm.FormRef(FormOID=f"F.{name}", Mandatory="Yes")]))
            mdv.FormDef.append(odm.FormDef(
                OID=f"F.{name}", Name=name, Repeating="No",
                ItemGroupRef=[odm.ItemGroupRef(ItemGroupOID=f"IG.{name}", Mandatory="Yes")]))
            fields = [k for k in cls.model_fields if k not in ENVELOPE or k == "reason"]
            mdv.ItemGroupDef.append(odm.ItemGroupDef(
                OID=f"IG.{name}", Name=name, Repeating="No",
                ItemRef=[odm.ItemRef(ItemOID=f"IT.{name}.{k}", Mandatory="No") for k in fields]))
            for key in fields:
                mdv.ItemDef.append(odm.ItemDef(
                    OID=f"IT.{name}.{key}", Name=key,
                    DataType=_datatype(cls.model_fields[key].annotation)))
        study = odm.Study(OID=self.study_oid)
        study.GlobalVariables = odm.GlobalVariables(
            StudyName=odm.StudyName(_content=self.trial.name),
            StudyDescription=odm.StudyDescription(_content=protocol.title),
            ProtocolName=odm.ProtocolName(_content=f"{self.trial.name} {protocol.version}"))
        study.MetaDataVersion.append(mdv)
        return study

    def admin(self):
        odm = self.odm
        admin = odm.AdminData(StudyOID=self.study_oid)
        for actor in sorted(self.users):
            admin.User.append(odm.User(OID=f"USR.{actor}",
                                       LoginName=odm.LoginName(_content=actor)))
        for site in sorted(self.sites):
            admin.Location.append(odm.Location(
                OID=f"LOC.{site}", Name=site, LocationType="Site",
                MetaDataVersionRef=[odm.MetaDataVersionRef(
                    StudyOID=self.study_oid, MetaDataVersionOID=self.mdv_oid,
                    EffectiveDate=self.effective)]))
        for meaning in sorted(self.meanings):
            admin.SignatureDef.append(odm.SignatureDef(
                OID=f"SD.{meaning}", Methodology="Electronic",
                Meaning=odm.Meaning(_content=MEANINGS[meaning]),
                LegalReason=odm.LegalReason(_content=LEGAL_REASON)))
        return admin


_ANNOTATED = (e.QueryOpened, e.QueryAnswered, e.QueryClosed, e.QueryReopened, e.SourceVerified)


def _annotation_text(event: e.Event) -> tuple[str, str]:
    """The comment of a query step or verification, and whether the sponsor or the site made
    it (the site answers; the sponsor's monitors and the system ask, close and verify)."""
    match event:
        case e.QueryOpened():
            by = f"edit check {event.rule}" if event.rule else event.actor
            return (f"{event.query_id} opened by {by} on {event.field}: {event.text}", "Sponsor")
        case e.QueryAnswered():
            fix = f" (correction {event.correction})" if event.correction else ""
            return f"{event.query_id} answered by {event.actor}{fix}: {event.text}", "Site"
        case e.QueryClosed():
            return (f"{event.query_id} closed by {event.actor}"
                    + (f": {event.text}" if event.text else ""), "Sponsor")
        case e.QueryReopened():
            return f"{event.query_id} reopened by {event.actor}: {event.text}", "Sponsor"
    return (f"source data verified by {event.actor}"
            + (f": {event.note}" if getattr(event, "note", None) else ""), "Sponsor")


def _version(entry: str) -> int:
    return int(entry.rpartition("#")[2])
