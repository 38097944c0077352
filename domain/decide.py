"""Decide: a command and the current aggregate either yield new events or raise a refusal.

Nothing here does I/O. The ledger loads the aggregate, calls `decide_*`, and saves the events.
For a subject, a command is accepted when the timeline *with the new fact* still holds under
the protocol (`domain.timeline.derive`); a correction or retraction re-validates the timeline
with the change in place, so the same rules judge every path into the record. A new fact that
comes last in clinical order extends the walk the patient kept from its last command instead of
walking anew: the same handlers in the same order, so the same state, in constant time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

from m22bol.domain import commands as c
from m22bol.domain import events as e
from m22bol.domain.errors import BadInput, DeviationRefused, LedgerError, RuleViolation
from m22bol.domain.patient import Patient, apply_correction, entry_id, patient_id
from m22bol.domain.protocol import Protocol, parse_protocol, protocol_digest
from m22bol.domain.timeline import State, extend, finish, resumes, walk
from m22bol.domain.trial import TRIAL_ID, Trial, seal_digest


@dataclass(frozen=True)
class Context:
    actor: str
    now: datetime

    @property
    def today(self) -> date:
        return self.now.date()


# (aggregate id, head version, SHA-256 of the head's stored bytes) of every chain.
SealHeads = tuple[tuple[str, int, str], ...]
# Signs a seal's digest with a key the domain never sees: digest -> (public key, signature).
SealSigner = Callable[[str], tuple[str, str]]


@dataclass(frozen=True)
class Vouched:
    """What only the ledger can supply, because it reads files, checks passwords or reads the
    store: the domain decides on these values and never on where they came from. A field is
    None when the command needs none; a command that needs one the ledger did not give is a bug
    in the ledger (TypeError), not a refusal."""

    protocol_text: str | None = None  # init, amend-protocol: the protocol file as read
    password_hash: str | None = None  # set-/reset-password: the salted hash of the new password
    head_digest: str | None = None  # sign: the chain head's digest, once the password matched
    seal_heads: SealHeads | None = None  # seal: every chain's head, as verified
    seal_signer: SealSigner | None = None  # seal --key: signs the digest (optional)


_T = TypeVar("_T")


def _needed(value: _T | None, name: str, command: str) -> _T:
    if value is None:
        raise TypeError(f"{command}: the ledger must vouch for {name} before the domain decides")
    return value


@dataclass
class Decision:
    events: list[e.Event]
    output: dict[str, Any] = field(default_factory=dict)
    # The subject's state walked with the new fact: the edit checks look at it afterwards.
    state: Any = None
    # The same walk before the finishers, for the patient that keeps the decided event
    # (`Patient.keep_walk`): the next fact that comes last is decided by extending it.
    walked: State | None = None


def _envelope(aggregate_id, version: int, ctx: Context, command: c.Command, reason=None) -> dict:
    return {
        "originator_id": aggregate_id,
        "originator_version": version,
        "recorded_at": ctx.now,
        "actor": ctx.actor,
        "source": command.source,
        "reason": reason,
    }


# --- the trial --------------------------------------------------------------------------------


def decide_trial(command: c.Command, trial: Trial | None, ctx: Context,
                 vouched: Vouched = Vouched()) -> Decision:
    """Trial-level commands."""
    if isinstance(command, c.Init):
        if trial is not None:
            raise RuleViolation("the ledger is already initialised", rule="init.twice")
        text = _needed(vouched.protocol_text, "protocol_text", command.name)
        protocol = parse_protocol(text, source=command.protocol or "bundled protocol")
        protocol.check_coding()
        event = e.TrialInitialised(
            **_envelope(TRIAL_ID, 1, ctx, command), trial=protocol.name, protocol_text=text,
            protocol_digest=protocol_digest(text), protocol_version=protocol.version,
            admin=ctx.actor, synthetic=command.synthetic,
        )
        return Decision([event], {"trial": protocol.name, "protocol_version": protocol.version,
                                  "protocol_digest": event.protocol_digest, "admin": ctx.actor})
    assert trial is not None
    env = _envelope(TRIAL_ID, trial.version + 1, ctx, command, getattr(command, "reason", None))
    match command:
        case c.AmendProtocol():
            text = _needed(vouched.protocol_text, "protocol_text", command.name)
            new = parse_protocol(text, source=command.file)
            new.check_coding()
            if any(v == new.version for v, _, _ in trial.protocol_texts):
                raise RuleViolation(f"protocol version {new.version} is already registered",
                                    rule="protocol.version_exists", field="version")
            old_ids = {b.id for b in trial.protocol.baskets}
            if missing := old_ids - {b.id for b in new.baskets}:
                raise RuleViolation(
                    f"an amendment may add baskets but not drop them: {sorted(missing)}",
                    rule="protocol.basket_dropped",
                )
            event = e.ProtocolAmended(**env, protocol_text=text,
                                      protocol_digest=protocol_digest(text),
                                      protocol_version=new.version)
            return Decision([event], {"protocol_version": new.version,
                                      "protocol_digest": event.protocol_digest})
        case c.Grant():
            event = e.RoleGranted(**env, user=command.user, role=command.role, site=command.site)
            return Decision([event], {"user": command.user, "role": command.role})
        case c.Revoke():
            if not any(g.role == command.role and g.site == command.site
                       for g in trial.roles_of(command.user)):
                raise BadInput(f"user: {command.user} holds no {command.role} grant to revoke",
                               field="user")
            event = e.RoleRevoked(**env, user=command.user, role=command.role, site=command.site)
            return Decision([event], {"user": command.user, "role": command.role})
        case c.Seal():
            heads = _needed(vouched.seal_heads, "seal_heads", command.name)
            # A head's version is the number of events in its chain.
            seal = e.Sealed(**env, digest="", note=command.note, heads=heads,
                            event_count=sum(version for _, version, _ in heads))
            seal = seal.model_copy(update={"digest": seal_digest(seal)})
            if vouched.seal_signer is not None:
                key, signature = vouched.seal_signer(seal.digest)
                seal = seal.model_copy(update={"signing_key": key, "signature": signature})
            return Decision([seal], {"digest": seal.digest, "event_count": seal.event_count,
                                     "chains": len(seal.heads), "note": seal.note})
        case c.SetPassword():
            # Only the salted hash the ledger made crosses into the domain, never the password.
            event = e.PasswordSet(**env, user=ctx.actor, password_hash=_needed(
                vouched.password_hash, "password_hash", command.name))
            return Decision([event], {"user": ctx.actor, "password": "set"})
        case c.ResetPassword():
            event = e.PasswordSet(**env, user=command.user, password_hash=_needed(
                vouched.password_hash, "password_hash", command.name))
            return Decision([event], {"user": command.user, "password": "reset"})
        case c.RecordAuthenticationFailure():
            event = e.AuthenticationFailed(**env, user=command.user, account=command.account,
                                           attempt=command.attempt, message=command.message)
            return Decision([event], {"user": command.user, "attempt": command.attempt})
        case c.RecordAuthenticationSuccess():
            return Decision([e.AuthenticationSucceeded(**env, user=command.user)], {})
        case c.Unlock():
            if command.subject is None and not trial.locked or (
                command.subject is not None and command.subject not in trial.locked_subjects
            ):
                raise BadInput("unlock: nothing to unlock", field="subject")
            return Decision([e.LedgerUnlocked(**env, subject=command.subject)], {})
        case c.Lock():
            if command.subject is None and trial.locked or (
                command.subject is not None and command.subject in trial.locked_subjects
            ):
                raise BadInput("lock: already locked", field="subject")
            return Decision([e.LedgerLocked(**env, subject=command.subject)], {})
    raise BadInput(f"command: {command.name} is not a trial command", field="command")


# --- a subject --------------------------------------------------------------------------------

# Command field -> event field, where the CLI's singular option names a list.
RENAMES = {"target": "targets", "node": "nodes", "non_target": "non_targets",
           "new_lesion": "new_lesions", "id": "ae_id", "serious": "serious_criteria"}
_FACTS: dict[type[c.Command], type[e.Fact]] = {
    c.AssessEligibility: e.EligibilityAssessed, c.Enrol: e.Enrolled, c.Infuse: e.InfusionGiven,
    c.Interrupt: e.TreatmentInterrupted, c.Resume: e.TreatmentResumed,
    c.ReduceDose: e.DoseReduced, c.Discontinue: e.TreatmentDiscontinued,
    c.AdverseEvent: e.AdverseEventReported, c.UpdateAdverseEvent: e.AdverseEventUpdated,
    c.ResolveAdverseEvent: e.AdverseEventResolved, c.Lvef: e.LvefMeasured,
    c.Surgery: e.SurgeryPerformed, c.Complication: e.ComplicationRecorded,
    c.Radiotherapy: e.RadiotherapyGiven, c.CompleteLocalTreatment: e.LocalTreatmentCompleted,
    c.Pathology: e.PathologyReported, c.Scan: e.ScanRecorded, c.Pet: e.PetRecorded,
    c.Ctdna: e.CtdnaRecorded, c.Contact: e.ContactRecorded, c.Death: e.DeathRecorded,
    c.SubsequentTherapy: e.SubsequentTherapyStarted,
    c.Withdraw: e.Withdrawn,
}
_NOT_FACT_FIELDS = {"subject", "source", "deviation_reason", "reason"}


def decide_subject(
    command: c.SubjectCommand, patient: Patient | None, protocol: Protocol, ctx: Context,
    vouched: Vouched = Vouched(),
) -> Decision:
    """Subject-level commands."""
    if isinstance(command, c.Register):
        if patient is not None:
            raise RuleViolation(f"subject {command.subject} is already registered",
                                rule="register.exists", field="subject")
        event = e.Registered(
            **_envelope(patient_id(command.subject), 1, ctx, command), subject=command.subject,
            site=command.site, consent_date=command.consent_date, birth_year=command.birth_year,
            sex=command.sex,
        )
        walked = walk(command.subject, [(entry_id(command.subject, 1), event)], protocol,
                      ctx.today)
        return Decision([event], {"entry": entry_id(command.subject, 1)}, finish(walked),
                        walked)
    if patient is None:
        raise BadInput(f"subject: {command.subject} is not registered", field="subject")

    version = patient.version + 1
    entry = entry_id(patient.subject, version)
    env = _envelope(patient.id, version, ctx, command, getattr(command, "reason", None))
    if isinstance(command, c.Sign):
        return _signature(command, patient, entry, env,
                          _needed(vouched.head_digest, "head_digest", command.name))
    timeline = patient.timeline()
    _registration_usable(command, patient)
    # Taken even when not resumed: a correction or retraction walks anew, and the kept walk
    # is then of a timeline that no longer holds.
    kept = patient.take_walk(protocol, ctx.today)

    if isinstance(command, c.Correct):
        candidate, timeline = _correction(command, patient, timeline, env)
    elif isinstance(command, c.Retract):
        candidate, timeline = _retraction(command, patient, timeline, env)
    else:
        fields = {RENAMES.get(k, k): v for k, v in command if k not in _NOT_FACT_FIELDS}
        if isinstance(command, (c.UpdateAdverseEvent, c.ResolveAdverseEvent)):
            _require_ae(command.ae_id, patient)
        if isinstance(command, c.AdverseEvent):
            fields["ae_id"] = fields["ae_id"] or _next_ae_id(patient)
            fields["ctcae_version"] = protocol.ctcae_version
        candidate = _FACTS[type(command)](**env, **fields)
        timeline = [*timeline, (entry, candidate)]

    try:
        appended = not isinstance(command, (c.Correct, c.Retract))  # a new fact, at the end
        if appended and kept is not None and resumes(kept, candidate, protocol, ctx.today):
            extend(kept, entry, candidate, ctx.today)
            walked = kept
        else:
            walked = walk(patient.subject, timeline, protocol, ctx.today)
        state = finish(walked)
        accepted = _accepted(patient) if state.deviations else set()
        new = [d for d in state.deviations if (d.entry, d.rule) not in accepted]
        reason = getattr(command, "deviation_reason", None)
        if new and not reason:
            raise DeviationRefused(
                "protocol deviation: " + "; ".join(f"{d.rule}: {d.message}" for d in new)
                + " (give --deviation-reason to record it as a deviation)",
                rule=new[0].rule,
            )
    except LedgerError as error:
        _explain(error, command, entry)
        raise
    output = {"entry": entry, **state.outputs.get(entry, {})}
    # Only values the ledger computes go back into the event: an output key that also names an
    # entered field (a scan's `new_lesions` flag vs its list of locations) must not replace it.
    record = {k: v for k, v in output.items() if k in _COMPUTED
              and k in type(candidate).model_fields}
    if record or new or candidate.deviation_reason is not None or candidate.deviations:
        event = type(candidate).model_validate({
            **candidate.model_dump(), **record,
            "deviations": new, "deviation_reason": reason if new else None,
        })
    else:
        # Nothing computed and no deviation to add: the event is the candidate as validated.
        event = candidate
    output = {k: v for k, v in output.items() if k not in _RECORD_ONLY}
    if isinstance(candidate, e.EntryCorrected):
        before = {**patient.held(), **dict(patient.timeline())}[candidate.entry].facts()
        output.update(corrects=candidate.entry, new_values=dict(candidate.changes),
                      old_values={k: before.get(k) for k in candidate.changes})
    elif isinstance(candidate, e.EntryRetracted):
        output["retracts"] = candidate.entry
    if new:
        output["deviations"] = [d.model_dump() for d in new]
    return Decision([event], output, state, walked)


def _signature(command: c.Sign, patient: Patient, entry: str, env: dict, head_digest: str):
    """The signer's name, the time and the meaning come with the envelope; the digest binds the
    signature to exactly the records up to the current head."""
    last = patient.events[-1]
    if isinstance(last, e.Signed) and (last.meaning, last.actor) == (command.meaning,
                                                                     env["actor"]):
        raise RuleViolation(f"{patient.subject}: nothing changed since you signed it "
                            f"({command.meaning}) as {entry_id(patient.subject, patient.version)}",
                            rule="sign.unchanged")
    event = e.Signed(**env, meaning=command.meaning, head_digest=head_digest,
                     covers_version=patient.version)
    return Decision([event], {
        "entry": entry, "signer": env["actor"], "meaning": command.meaning,
        "covers": entry_id(patient.subject, patient.version), "head_digest": head_digest,
    })


def _accepted(patient: Patient) -> set[tuple[str, str]]:
    """(entry, rule) of every deviation accepted so far, kept on the patient (`fold`)."""
    return patient.fold("accepted deviations", set, _accepted_step)


def _accepted_step(accepted: set[tuple[str, str]], event: e.Event) -> set[tuple[str, str]]:
    if isinstance(event, e.Fact):
        accepted.update((d.entry, d.rule) for d in event.deviations)
    return accepted


def _next_ae_id(patient: Patient) -> str:
    taken = patient.fold("ae ids", set, _ae_id_step)
    n = len(taken) + 1
    while f"AE{n}" in taken:
        n += 1
    return f"AE{n}"


def _ae_id_step(taken: set[str], event: e.Event) -> set[str]:
    if isinstance(event, e.AdverseEventReported):
        taken.add(event.ae_id)
    return taken


def _require_ae(ae_id: str, patient: Patient) -> None:
    """An unknown AE id is bad input (exit 2); one dated before its onset the walk refuses."""
    if not any(f.ae_id == ae_id for f in patient.facts_of(e.AdverseEventReported).values()):
        raise BadInput(f"ae_id: {ae_id} is not an adverse event of this subject", field="ae_id")


def _registration_usable(command: c.SubjectCommand, patient: Patient) -> None:
    """A registration held for a stored value today's rules refuse (written by an older
    version) leaves the walk nothing to start from: correcting it is the one way on."""
    first = entry_id(patient.subject, 1)
    if first in (held := patient.held()) and not (
            isinstance(command, c.Correct) and command.entry == first):
        why = "; ".join(why for _, why in held[first].stored_problems)
        raise RuleViolation(f"{first}: the stored registration fails today's rules ({why}); "
                            f"correct {first} first", rule="stored.registration",
                            field="entry")


def _live_fact(patient: Patient, timeline, entry: str) -> e.Fact:
    event = patient.event_of(entry)
    if not isinstance(event, e.Fact) or isinstance(event, (e.EntryCorrected, e.EntryRetracted)):
        raise BadInput(f"entry: {entry} is not a clinical fact", field="entry")
    live = {**patient.held(), **dict(timeline)}  # a held fact is there to be corrected
    if entry not in live:
        raise RuleViolation(f"{entry} was retracted; it cannot be changed",
                            rule="correct.retracted", field="entry")
    return live[entry]


def _correction(command: c.Correct, patient: Patient, timeline, env):
    current = _live_fact(patient, timeline, command.entry)
    allowed = set(current.facts()) - _COMPUTED - _IDENTIFYING
    changes: dict[str, Any] = {}
    for key, value in command.set.items():
        name = RENAMES.get(key.replace("-", "_"), key.replace("-", "_"))
        if name in _IDENTIFYING:
            raise BadInput(f"set: {key} identifies the entry and cannot be corrected; retract "
                           "the entry and enter it anew", field=key)
        if name not in allowed:
            raise BadInput(f"set: {key} is not a field of {command.entry} "
                           f"(fields: {', '.join(sorted(allowed))})", field="set")
        changes[name] = value
    if not changes:
        raise BadInput("set: give at least one KEY=VALUE", field="set")
    corrected = apply_correction(current, _as_entered(current, changes, patient.subject))
    stored = {k: v for k, v in corrected.facts().items() if k in changes}
    if all(current.facts()[k] == v for k, v in stored.items()):
        raise BadInput("set: the new values equal the current ones", field="set")
    event = e.EntryCorrected(**env, entry=command.entry, changes=stored,
                             deviation_reason=command.deviation_reason)
    return event, patient.timeline(replacing={command.entry: corrected})


def _explain(error: LedgerError, command: c.Command, entry: str) -> None:
    """A refusal names only entries that exist, and says what to do next. `entry` is the id the
    refused command would have had: it was never written, so it is "this entry"."""
    unwritten = re.compile(re.escape(entry) + r"(?!\d)")
    message = unwritten.sub("this entry", error.message.removeprefix(f"{entry}: "))
    target = getattr(command, "entry", None)
    if isinstance(command, (c.Retract, c.Correct)) and error.entry not in (None, entry, target):
        # A later fact rested on the one withdrawn or changed: name it, and the way out.
        undo = "retracting" if isinstance(command, c.Retract) else "correcting"
        message += (f"; {error.entry} depends on {target}: correct or retract {error.entry} "
                    f"before {undo} {target}")
    error.message = message
    error.args = (message,)


def _as_entered(current: e.Fact, changes: dict[str, Any], subject: str) -> dict[str, Any]:
    """The changed values, validated by the command model that entered the fact, exactly as a
    new entry is (types, ranges, lengths, patterns, printable text, finite numbers); an error
    names the field as the command spells it."""
    model = COMMAND_OF[type(current)]
    facts = current.facts()
    values: dict[str, Any] = {"subject": subject}
    for name in model.model_fields:
        stored = RENAMES.get(name, name)
        if stored in changes:
            values[name] = _list_from_json(changes[stored], name)
        elif stored in facts and stored not in _COMPUTED and facts[stored] is not None:
            values[name] = facts[stored]
    entered = c.parse_command(model.name, values)
    return {k: getattr(entered, _ENTERED_AS.get(k, k)) for k in changes}


def _list_from_json(value: Any, name: str) -> Any:
    # `correct --set targets=[...]` hands a list in as JSON text.
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return c.strict_json(value)
        except ValueError as exc:
            raise BadInput(f"{name}: not a JSON list: {exc}", field=name) from None
    return value


def _retraction(command: c.Retract, patient: Patient, timeline, env):
    current = _live_fact(patient, timeline, command.entry)
    if isinstance(current, e.Registered):
        raise RuleViolation("the registration cannot be retracted; correct it instead",
                            rule="retract.registration", field="entry")
    event = e.EntryRetracted(**env, entry=command.entry)
    return event, [(k, f) for k, f in timeline if k != command.entry]


# Values the ledger computes and stores for the record: never corrected by hand.
_COMPUTED = {"eligible", "failed_criteria", "basket", "protocol_version", "expected_dose_mg",
             "dose_level_mg_per_kg", "action", "response", "pcr", "ctcae_version",
             "ctcae_term", "meddra_code", "soc", "coded_on_read"}
# Fields that name what other entries refer to: a correction would cut those links.
_IDENTIFYING = {"subject", "ae_id"}
# The command that enters each fact: a correction, and `audit verify`'s check of stored values
# (`domain.stored_values`), validate a fact's values by it.
COMMAND_OF: dict[type[e.Fact], type[c.Command]] = {
    **{fact: command for command, fact in _FACTS.items()}, e.Registered: c.Register}
_ENTERED_AS = {stored: entered for entered, stored in RENAMES.items()}
# Stored for the record but not printed: the scan prints the same values flat (spec/cli.md).
_RECORD_ONLY = {"response"}
