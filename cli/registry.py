"""Where each `m22bol` command lives, and the one line `m22bol --help` lists it with.

The group in `cli/main.py` imports a command's module only when that command runs (click's
lazy-loading pattern), so `m22bol contact` never imports the report, the audit exports or the
demo generator, and `m22bol --help` imports none of them: it lists each command with the
summary below. tests/integration/test_cli_help.py checks that every summary is the first
paragraph of the command's own help and that every command is listed, so this table cannot
drift from the commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click

# Command name -> (module under m22bol.cli that registers it on import, its help's first
# paragraph). A module registers all of its commands at once, except entry, which builds the
# one asked for from its command model (`cli.entry.build_command`).
COMMANDS: dict[str, tuple[str, str]] = {
    'adverse-event': ('entry',
        'Report an adverse event coded to CTCAE v5.0; prints the AE id, the coding and the '
        'required action.'),
    'amend-protocol': ('entry', 'Register a new protocol version from a TOML file.'),
    'assess-eligibility': ('entry',
        'Record the eligibility assessment; a failure is kept as a screen failure.'),
    'audit': ('audit',
        'Integrity and the audit trail: verify the hash chains and seals, seal, export.'),
    'complete-local-treatment': ('entry',
        'Mark local treatment complete; closes the neo-adjuvant phase.'),
    'complication': ('entry', 'Record a surgical complication (Clavien-Dindo).'),
    'contact': ('entry', 'Record that the subject was known alive on a date.'),
    'correct': ('entry', 'Correct an earlier entry: new values, a reason, the old values kept.'),
    'ctdna': ('entry', 'Record a ctDNA result.'),
    'db': ('db', 'The database of a PostgreSQL ledger.'),
    'death': ('entry', "Record the subject's death."),
    'demo': ('demo', 'Build a realistic synthetic trial in the ledger and print the endpoints.'),
    'deviations': ('queries', 'Every protocol deviation accepted with a reason.'),
    'discontinue': ('entry', 'Discontinue treatment permanently.'),
    'endpoints': ('tallies',
        'Endpoint tallies per basket with 95% CIs (docs/endpoints.md); facts after --cutoff never'
        ' count.'),
    'enrol': ('entry',
        'Enrol an eligible subject; the basket follows from the strata and is printed.'),
    'grant': ('entry', 'Give a user a role, optionally for one site.'),
    'history': ('queries',
        'The audit trail: who entered or changed what, when and why. Without SUBJECT, the '
        "trial's: protocol versions, grants, passwords set, refused authentications, locks, "
        'seals.'),
    'import': ('entry', 'Apply JSON Lines records as one transaction: every line or none.'),
    'infuse': ('entry',
        'Record an infusion; prints the expected dose, dose level and next due date.'),
    'init': ('entry', 'Start a new ledger with the protocol; the acting user becomes admin.'),
    'interrupt': ('entry', 'Interrupt treatment by decision.'),
    'lock': ('entry', 'Lock the ledger, or one subject, against entries.'),
    'lvef': ('entry', "Record an LVEF reading; applies the label's LVEF table."),
    'pathology': ('entry', 'Record the pathology of resected tissue; pCR is derived.'),
    'patient': ('queries',
        "The subject's current state in labelled sections, then the timeline of entries."),
    'pet': ('entry', 'Record an FDG-PET; PERCIST category for every PET after the first infusion.'),
    'projections': ('read_models', 'The SQL read models that the current-state queries read.'),
    'protocol': ('queries', 'The protocol in force, and every version registered.'),
    'queries': ('clarifications',
        'Data clarification queries with their age in days; --json gives each whole thread.'),
    'query': ('clarifications',
        'Data clarification queries: open, answer, close, reopen (ids Q-N).'),
    'radiotherapy': ('entry', 'Record a course of radiotherapy.'),
    'reduce-dose': ('entry', 'Reduce the dose one level by decision.'),
    'register': ('entry', 'Register a subject at a site on informed consent.'),
    'report': ('report',
        'The monitoring report: flow, endpoints, waterfall, swimmer, spider, Kaplan-Meier, '
        'safety, deviations and open interruptions, readable offline in any browser.'),
    'reset-password': ('audit',
        "Set a user's first or forgotten password (admin); lifts a lockout."),
    'resolve-adverse-event': ('entry', 'Record the resolution of an adverse event.'),
    'resume': ('entry', 'Resume an interrupted treatment by decision.'),
    'retract': ('entry', 'Retract an entry entered in error, with a reason.'),
    'revoke': ('entry', 'Take a role away from a user.'),
    'safety': ('tallies',
        'Treatment-emergent AEs by term and worst grade, serious AEs, Clavien-Dindo.'),
    'scan': ('entry', 'Record a CT/MRI tumour assessment; prints the RECIST 1.1 response.'),
    'sdv': ('clarifications',
        'Source data verification: entries verified over entries per site and subject, and every '
        'entry not verified yet.'),
    'set-password': ('audit', 'Set your own password; changing it asks for the current one first.'),
    'sign': ('audit',
        "Sign a subject's records as they stand (investigator); asks for your password again."),
    'status': ('queries',
        'Counts per basket: screened, screen-failed, enrolled, on treatment, ... dead.'),
    'subsequent-therapy': ('entry',
        'Record the start of a new anticancer therapy; progression-free survival is censored at '
        'the last adequate assessment on or before it.'),
    'surgery': ('entry', 'Record surgery of the primary or a metastasis.'),
    'unlock': ('entry', 'Lift a lock (the reason is audited).'),
    'update-adverse-event': ('entry', 'Record a change of grade of an adverse event.'),
    'verify-source': ('clarifications',
        'Mark an entry as verified against source (undone by a later correction).'),
    'withdraw': ('entry', 'Record withdrawal of consent.'),
}


# Examples of the commands that are not entries, in the order a new user meets them; each runs
# against the ledger the course above leaves behind.
EXAMPLES: dict[str, list[str]] = {
    "patient": ["m22bol patient M22-001", "m22bol patient M22-001 --cutoff 2025-03-31"],
    "history": ["m22bol history M22-001", "m22bol history"],
    "status": ["m22bol status"],
    "protocol": ["m22bol protocol"],
    "deviations": ["m22bol deviations"],
    "endpoints": ["m22bol endpoints --cutoff 2025-12-31"],
    "safety": ["m22bol safety"],
    "import": ["m22bol init --ledger sqlite:///course.sqlite",
               "m22bol grant alice data-manager --ledger sqlite:///course.sqlite",
               "m22bol reset-password alice --ledger sqlite:///course.sqlite",
               "m22bol import docs/examples/course.jsonl --user alice "
               "--ledger sqlite:///course.sqlite"],
    "report": ["m22bol report --out report"],
    "audit verify": ["m22bol audit verify"],
    "audit export": ["m22bol audit export --format jsonl --out trail.jsonl"],
    "projections status": ["m22bol projections status"],
    "projections rebuild": ["m22bol projections rebuild"],
    "audit seal": ['m22bol audit seal --note "interim analysis"'],
    "demo": ["m22bol demo --patients 40 --seed 1 --ledger sqlite:///demo.sqlite"],
    "reset-password": ["m22bol reset-password alice"],
    "set-password": ["m22bol set-password"],
    "sign": ["m22bol sign M22-001 --meaning reviewed"],
    "audit keygen": ["m22bol audit keygen --out seal-key"],
    "db setup": ["m22bol db setup --ledger postgresql+psycopg://owner@db.site.example/trial"],
    "queries": ["m22bol queries --status open", "m22bol queries --refresh"],
    "sdv": ["m22bol sdv --site S1"],
    "query open": ['m22bol query open M22-001 M22-001#4 --field dose_mg '
                   '--text "dose does not match the weight; please check the source"'],
    "query answer": ['m22bol query answer Q-1 --text "weight was 76 kg; corrected" '
                     '--correction M22-001#9'],
    "query close": ["m22bol query close Q-1"],
    "query reopen": ['m22bol query reopen Q-1 --text "the pharmacy record still differs"'],
    "verify-source": ["m22bol verify-source M22-001 M22-001#4"],
}


def add_examples(command: click.Command, path: tuple[str, ...]) -> None:
    """Append the example of the command (and of each command of a group) to its `--help`,
    once, however often it is loaded."""
    lines = EXAMPLES.get(" ".join(path))
    if lines and "Example" not in (command.help or ""):
        command.help = (command.help or "") + "\n\nExample:\n\n\b\n" + "\n".join(
            "  " + line for line in lines)
    for name, sub in getattr(command, "commands", {}).items():
        add_examples(sub, (*path, name))
