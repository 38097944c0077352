"""`m22bol demo`: a realistic synthetic trial, entered through the one write path.

On a new ledger it runs `init` as the acting user (who becomes admin), marking the ledger
synthetic, and grants that user data-manager, so the entries are allowed; it refuses a ledger
initialised for real data (exit 3), and on a synthetic one only an admin may run it. The
subjects come from `synthetic.generator.generate` and go through `TrialLedger.execute_all` in
one transaction with the setup, so the rules judge every fact as they judge a person's entry
and a refusal or a kill leaves nothing. Then it prints the endpoint tallies.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Sequence
from typing import Any

import click

from m22bol.cli.main import Session, cli, handled, shared_options
from m22bol.cli.output import emit
from m22bol.cli.tallies import endpoints_text  # the table `m22bol endpoints` prints
from m22bol.domain import commands as c
from m22bol.domain.errors import LedgerError, RuleViolation

ENTRY_ROLES = ("data-manager", "investigator")


@cli.command()
@click.option("--patients", type=click.IntRange(1, 1_000_000), default=400, show_default=True,
              help="Subjects to register (about one in six fails screening).")
@click.option("--seed", type=int, default=1, show_default=True,
              help="The same seed gives the same trial.")
@shared_options
@handled
def demo(s: Session, patients: int, seed: int) -> None:
    """Build a realistic synthetic trial in the ledger and print the endpoints.

    Screening failures, all four baskets, delays, dose reductions after AEs, surgery and
    radiotherapy, scans every 9-12 weeks, ctDNA and PET, progression, deaths and years of
    follow-up, deterministic for a seed. On a new ledger the acting user becomes admin.
    """
    from m22bol.ledger import access
    from m22bol.synthetic.generator import DATA_CUTOFF, generate

    ledger = s.ledger
    trial = ledger.trial()
    if trial is not None and not trial.synthetic:
        raise RuleViolation("demo: this ledger was initialised for real data; run the demo on "
                            "a new ledger, which it marks synthetic", rule="demo.real_ledger")
    if trial is not None:
        access.check(trial, s.user, "demo")
    # The protocol in force; on a new ledger, the bundled one `init` is about to register.
    protocol = trial.protocol if trial else None
    today = min(DATA_CUTOFF, ledger.clock().date())
    subjects_iter = generate(patients, seed, protocol=protocol, today=today)
    first = next(subjects_iter)
    if trial is not None and ledger.patient(first.subject) is not None:
        # Checked before anything is written: a refused run leaves the ledger as it was.
        raise RuleViolation(f"demo: subject {first.subject} is already in this ledger; "
                            "run the demo on a new ledger", rule="register.exists")
    setup, first_commands = _prepare(s, trial)

    started = time.perf_counter()
    batch = list(itertools.chain([first], subjects_iter))
    bar = click.progressbar(length=patients, label="entering subjects", file=sys.stderr,
                            show_pos=True)
    try:
        entered = _enter(ledger, s.user, batch, bar, first_commands)
    finally:
        bar.render_finish()
    subjects = len(batch)
    seconds = time.perf_counter() - started

    summary = {"patients": subjects, "seed": seed, "data_cutoff": today.isoformat(),
               "entries": entered, "seconds": round(seconds, 1), **setup}
    report = s.reader.endpoints()
    head = (f"demo: {subjects} subjects, {entered} entries (seed {seed}, data up to {today}) "
            f"in {seconds:.0f} s")
    if setup.get("initialised"):
        head += f"; ledger initialised with {s.user} as admin and data-manager"
    elif setup.get("granted"):
        head += f"; {s.user} granted data-manager"
    emit({"demo": summary, "endpoints": report}, s.as_json,
         text=None if s.as_json else head + "\n\n" + endpoints_text(report))


def _prepare(s: Session, trial) -> tuple[dict[str, Any], list]:
    """What goes first in the demo's transaction: a new ledger's init (marked synthetic), and
    an entry role for the user, so that they may enter the facts."""
    user = s.user
    grant = c.Grant(user=user, role="data-manager")
    if trial is None:
        return {"initialised": True}, s.first_commands([c.Init(synthetic=True), grant])
    if not any(g.role in ENTRY_ROLES and g.site is None for g in trial.roles_of(user)):
        # An admin holds no entry role by default; the demo enters facts in that admin's name.
        return {"initialised": False, "granted": True}, [grant]
    return {"initialised": False}, []


def _enter(ledger, user: str, batch: list, bar, first: Sequence[c.Command] = ()) -> int:
    """One transaction for the setup (`first`) and every subject, all or nothing; the bar moves
    one step per subject as its last command is decided. The entries made for the subjects."""
    commands = [*first, *(cmd for subject in batch for cmd in subject.commands)]
    ends: list[int] = []
    for subject in batch:
        ends.append((ends[-1] if ends else len(first)) + len(subject.commands))
    done = [0, 0]  # commands decided, subjects finished

    def step(n: int) -> None:
        done[0] += n
        while done[1] < len(ends) and done[0] >= ends[done[1]]:
            done[1] += 1
            bar.update(1)

    try:
        ledger.execute_all(commands, user, progress=step)
    except LedgerError as error:
        # Name the subject: the generator, not the person, made the command. A line within
        # the setup (init, the grant) belongs to no subject.
        if error.line is not None and error.line > len(first):
            who = next(b.subject for b, end in zip(batch, ends, strict=True) if error.line <= end)
            error.message = f"demo subject {who}: {error.message}"
            error.args = (error.message,)
        raise
    bar.update(len(batch) - done[1])  # a retried transaction decides again without a bar
    return len(commands) - len(first)
