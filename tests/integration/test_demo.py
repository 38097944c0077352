"""The synthetic trial (`synthetic/generator.py`, `m22bol demo`): the real rules accept every
command it generates, the same seed gives the same trial, and the trial has what the demo
promises."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

import click
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m22bol.cli.demo import _enter as enter_demo
from m22bol.domain import commands as c
from m22bol.domain.decide import Context, decide_subject
from m22bol.domain.errors import RuleViolation
from m22bol.domain.events import Fact
from m22bol.domain.patient import project_patient
from m22bol.domain.protocol import Strata, bundled_protocol_text, parse_protocol
from m22bol.domain.rules.eligibility import failed_criteria
from m22bol.ledger.app import TrialLedger
from m22bol.ledger.identity import os_account
from m22bol.synthetic.generator import DATA_CUTOFF, DemoSubject, describe, generate
from tests.support import invoke, new_ledger, open_ledger, set_passwords, store_fingerprint

N = 12
PROTOCOL = parse_protocol(bundled_protocol_text())


def _enter(url: str, subjects: list[DemoSubject]) -> TrialLedger:
    ledger = open_ledger(url)
    ledger.execute_all([c.Init(synthetic=True), c.Grant(user="admin", role="data-manager")],
                       "admin")
    for subject in subjects:
        ledger.execute_all(subject.commands, "admin")
    return ledger


def _contents(ledger: TrialLedger) -> list[dict]:
    # recorded_at is knowledge time, and prev_hash hashes it: the only values that may differ.
    return [event.model_dump(mode="json", exclude={"recorded_at", "prev_hash"})
            for _, event in ledger.stored_events()]


def _deviations_only_where_reasoned(commands: list[c.Command], facts: list[Fact]) -> None:
    """A command gives a deviation reason exactly where the rules find a deviation: a
    generator bug would otherwise be recorded as a deviation instead of being refused."""
    assert len(commands) == len(facts)
    for command, fact in zip(commands, facts, strict=True):
        reason = getattr(command, "deviation_reason", None)
        assert bool(fact.deviations) == bool(reason), (command, fact.deviations)


def _stored_facts(ledger: TrialLedger) -> list[Fact]:
    return [e for _, e in ledger.stored_events() if isinstance(e, Fact)]


def _all_commands(subjects: list[DemoSubject]) -> list[c.Command]:
    return [cmd for s in subjects for cmd in s.commands]


def test_every_generated_command_is_accepted(ledger_url):
    subjects = list(generate(N, seed=5))
    ledger = _enter(ledger_url, subjects)
    try:
        _deviations_only_where_reasoned(_all_commands(subjects), _stored_facts(ledger))
    finally:
        ledger.close()


def _decided_in_memory(subject: DemoSubject, today: date = DATA_CUTOFF) -> list[Fact]:
    """The subject's commands decided by the pure domain in the order a site enters them, on
    the cut-off day: the facts the ledger would store."""
    ctx = Context(actor="dm", now=datetime.combine(today, time(12), UTC))
    patient = None
    for command in subject.commands:
        patient = project_patient(patient, decide_subject(command, patient, PROTOCOL,
                                                          ctx).events)
    return patient.events


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32), first=st.integers(0, 400))
def test_for_any_seed_the_rules_accept_the_stories_with_reasons_only_where_they_deviate(
        seed, first):
    """The stories were built reading the rules fact by fact, out of the order a site enters
    them; entered in that order, the rules accept them and agree on every deviation."""
    for subject in generate(4, seed, first=first):
        _deviations_only_where_reasoned(subject.commands, _decided_in_memory(subject))


@pytest.mark.parametrize("today", [date(2021, 3, 1), date(2022, 6, 1), date(2024, 12, 30)])
def test_a_cutoff_during_accrual_gives_a_trial_up_to_that_day(today):
    """The CLI passes the ledger's date when its clock is behind the fixed cut-off: stories
    are cut there, early progressions not yet seen included."""
    subjects = list(generate(20, seed=7, today=today))
    assert len(subjects) == 20
    for subject in subjects:
        facts = _decided_in_memory(subject, today)
        assert max(f.clinical_date for f in facts) <= today
        _deviations_only_where_reasoned(subject.commands, facts)


def test_a_refused_demo_names_the_subject_and_line_and_writes_nothing(tmp_path):
    """One transaction from init to the last subject: a refusal names the subject the line
    falls in, and leaves the ledger as it was, its init and grant included."""
    url = f"sqlite:///{tmp_path}/demo.sqlite"
    first, second = generate(2, seed=5)
    consent = second.commands[0].consent_date
    # A contact before consent: impossible whoever enters it.
    broken = DemoSubject(second.subject, [
        *second.commands, c.Contact(subject=second.subject, date=consent - timedelta(days=1))])
    setup = [c.Init(synthetic=True), c.Grant(user="admin", role="data-manager")]
    line = len(setup) + len(first.commands) + len(broken.commands)
    ledger = open_ledger(url)
    try:
        before = store_fingerprint(url)
        bar = click.progressbar(length=2, file=io.StringIO())
        with pytest.raises(RuleViolation) as refused:
            enter_demo(ledger, "admin", [first, broken], bar, setup)
        assert ledger.trial() is None
    finally:
        ledger.close()
    assert refused.value.line == line
    assert refused.value.rule == "date.before_consent"
    assert refused.value.message.startswith(f"demo subject {second.subject}: line {line}: ")
    assert store_fingerprint(url) == before == []


def _features(subject: DemoSubject) -> set[str]:
    """The parts of the story a subject exercises, named for the test below."""
    found = set()
    for cmd in subject.commands:
        found.add(cmd.name)
        if isinstance(cmd, c.AdverseEvent):
            found.add(f"ae:{cmd.term}:{cmd.grade}")
        elif isinstance(cmd, c.UpdateAdverseEvent) and cmd.grade == 5:
            found.add("grade-5")
        elif isinstance(cmd, c.Lvef) and cmd.percent < 46:
            found.add("lvef-low")
        elif isinstance(cmd, c.Scan) and cmd.new_lesion:
            found.add("new-lesion")
        if getattr(cmd, "deviation_reason", None):
            found.add("deviation")
    return found


@pytest.fixture(scope="module")
def default_trial() -> list[DemoSubject]:
    """`m22bol demo`'s default trial, generated once: each subject's course asks the rules."""
    return list(generate(400, seed=1))


def test_the_rare_turns_of_400_subjects_are_accepted(sqlite_url, default_trial):
    """One subject for every kind of event the default trial holds: the paths twelve subjects
    rarely reach (grade 4 neutropenia, pneumonitis, an LVEF drop, death) meet the rules too."""
    chosen: dict[str, DemoSubject] = {}
    for subject in default_trial:
        for feature in _features(subject):
            # The shortest story with the feature: the rules' cost grows with a timeline.
            if feature not in chosen or len(subject.commands) < len(chosen[feature].commands):
                chosen[feature] = subject
    for expected in ("reduce-dose", "interrupt", "resume", "discontinue", "withdraw", "death",
                     "complication", "radiotherapy", "pathology", "lvef-low", "new-lesion",
                     "deviation", "ae:Neutrophil count decreased:4", "ae:Pneumonitis:1",
                     "ae:Pneumonitis:2", "ae:Platelet count decreased:3"):
        assert expected in chosen, expected
    subjects = list({s.subject: s for s in chosen.values()}.values())
    ledger = _enter(sqlite_url, subjects)
    try:
        _deviations_only_where_reasoned(_all_commands(subjects), _stored_facts(ledger))
    finally:
        ledger.close()


def test_the_same_seed_gives_the_same_trial(tmp_path):
    first = _enter(f"sqlite:///{tmp_path}/a.sqlite", list(generate(N, seed=11)))
    second = _enter(f"sqlite:///{tmp_path}/b.sqlite", list(generate(N, seed=11)))
    try:
        assert _contents(first) == _contents(second)
    finally:
        first.close()
        second.close()


_DUMP = ("import json, sys; from m22bol.synthetic.generator import generate; "
         "print(json.dumps([[s.subject, [[c.name, c.model_dump(mode='json')] for c in s.commands]]"
         " for s in generate(int(sys.argv[1]), seed=int(sys.argv[2]))]))")


def test_generation_does_not_depend_on_the_process(tmp_path):
    """String hashing differs between processes; the trial must not."""
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", _DUMP, "80", "3"], env=env, check=True,
                              capture_output=True, text=True, cwd=os.getcwd())
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]


def test_seeds_differ_and_slices_agree():
    assert ([s.commands for s in generate(6, seed=1)]
            != [s.commands for s in generate(6, seed=2)])
    whole = list(generate(30, seed=4))
    # A large trial built slice by slice (the benchmarks do) is the same trial.
    assert list(generate(10, seed=4, first=20)) == whole[20:]


def test_400_patients_hold_a_realistic_trial_of_at_least_20000_entries(default_trial):
    subjects = default_trial
    counts = describe(subjects)
    assert counts["subjects"] == 400
    assert counts["commands"] >= 20_000

    failures: Counter[str] = Counter()
    baskets: Counter[str] = Counter()
    regimen = PROTOCOL.regimens["tdxd"]
    for subject in subjects:
        first, *rest = subject.commands
        assert isinstance(first, c.Register)
        death = next((x.date for x in rest if isinstance(x, c.Death)), DATA_CUTOFF)
        gone = next((x.date for x in rest if isinstance(x, c.Withdraw)), DATA_CUTOFF)
        for cmd in subject.commands:
            last = gone if not isinstance(cmd, (c.Contact, c.Death)) else DATA_CUTOFF
            for name in ("date", "onset", "start", "end", "consent_date"):
                when = getattr(cmd, name, None)
                if isinstance(when, date):
                    # A course of radiotherapy must end by the withdrawal too, not only start.
                    assert first.consent_date <= when <= min(death, last), (subject.subject, cmd)
        infusions = [x for x in rest if isinstance(x, c.Infuse)]
        for before, after in zip(infusions, infusions[1:], strict=False):
            early = (after.date - before.date).days < regimen.min_days_between_cycles
            assert not early or after.deviation_reason, (subject.subject, after)
        assessment = next(x for x in rest if isinstance(x, c.AssessEligibility))
        values = assessment.model_dump(exclude={"subject", "source", "deviation_reason"})
        failed = failed_criteria(PROTOCOL, consent_date=first.consent_date, **values)
        failures.update(reason.split(":")[0] for reason in failed)
        enrolled = any(isinstance(x, c.Enrol) for x in rest)
        assert enrolled == (not failed)
        if enrolled:
            strata = Strata(her2=values["her2"], er=values["er"],
                            prior_therapy=values["prior_therapy"])
            baskets[PROTOCOL.basket_for(strata).id] += 1
    assert set(baskets) == {"I", "II", "III", "IV"}
    assert {"her2", "distant_lesions", "all_lesions_curable", "lvef", "ecog"} <= set(failures)
    # Years of follow-up: the earliest subjects are still seen in the last half year.
    last = max(getattr(cmd, "date", date.min) for cmd in subjects[0].commands)
    assert (DATA_CUTOFF - last).days < 190 or any(
        isinstance(cmd, c.Death) for cmd in subjects[0].commands)


def test_cli_demo_initialises_a_new_ledger_and_prints_the_endpoints(tmp_path):
    url = f"sqlite:///{tmp_path}/demo.sqlite"
    result = invoke(["--json", "demo", "--patients", "4", "--seed", "3"], url=url, user="alice")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["demo"]["initialised"] is True
    assert doc["demo"]["patients"] == 4
    expected = sum(len(s.commands) for s in generate(4, seed=3))
    assert doc["demo"]["entries"] == expected
    enrolled = sum(any(isinstance(x, c.Enrol) for x in s.commands) for s in generate(4, seed=3))
    assert doc["endpoints"]["baskets"]["all"]["enrolled"] == enrolled

    ledger = open_ledger(url)
    try:
        trial = ledger.require_trial()
        assert {g.role for g in trial.roles_of("alice")} == {"admin", "data-manager"}
        assert trial.synthetic and "alice" in trial.password_hashes
        subject_events = [e for _, e in ledger.stored_events() if isinstance(e, Fact)]
        assert len(subject_events) == expected
    finally:
        ledger.close()

    # Again on the same ledger: refused before anything is written.
    before = store_fingerprint(url)
    again = invoke(["demo", "--patients", "4", "--seed", "3"], url=url, user="alice")
    assert again.exit_code == 3
    assert "already in this ledger" in again.stderr
    assert store_fingerprint(url) == before
    # Only an admin may fill an existing ledger (bob is refused, and so is his login).
    stranger = invoke(["demo", "--patients", "4"], url=url, user="bob")
    assert stranger.exit_code == 4
    assert [row[3] for row in store_fingerprint(url)[len(before):]] == [
        "domain.events:AuthenticationFailed"]


def test_cli_demo_refuses_a_ledger_initialised_for_real_data(tmp_path):
    url = f"sqlite:///{tmp_path}/real.sqlite"
    new_ledger(url).close()
    before = store_fingerprint(url)

    result = invoke(["demo", "--patients", "2"], url=url, user="admin")

    assert result.exit_code == 3 and "real data" in result.stderr
    assert store_fingerprint(url) == before


def test_cli_demo_is_all_or_nothing(tmp_path):
    # The fifth subject is registered already: the demo is refused there, and the four before
    # it (and the grant that goes first) are not left behind.
    url = f"sqlite:///{tmp_path}/demo.sqlite"
    ledger = open_ledger(url)
    ledger.execute_all([c.Init(synthetic=True), c.Grant(user="dm", role="data-manager")],
                       "admin")
    set_passwords(ledger, ["dm"])
    fifth = list(generate(6, seed=2))[4]
    ledger.execute(fifth.commands[0], "dm")
    ledger.close()
    before = store_fingerprint(url)

    result = invoke(["demo", "--patients", "6", "--seed", "2"], url=url, user="admin")

    assert result.exit_code == 3 and fifth.subject in result.stderr, result.output
    assert store_fingerprint(url) == before


def test_cli_demo_prints_the_endpoint_table(tmp_path):
    url = f"sqlite:///{tmp_path}/demo.sqlite"
    result = invoke(["demo", "--patients", "2", "--seed", "9"], url=url, user="alice")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("demo: 2 subjects")
    assert "primary: responders" in result.stdout


def test_an_admin_without_an_entry_role_is_granted_one(tmp_path):
    url = f"sqlite:///{tmp_path}/demo.sqlite"
    ledger = open_ledger(url)
    ledger.execute(c.Init(synthetic=True), os_account())
    ledger.close()
    # The operating-system account acts as itself: no password asked.
    result = invoke(["--json", "demo", "--patients", "1"], url=url, user=os_account(),
                    password=None)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["demo"]["granted"] is True
