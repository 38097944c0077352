"""The role matrix of spec/audit.md: every entry command as every role, through the CLI.

A permitted role gets the entry done; any other role (and a user with no grant) is refused
with exit 4 and the store is left byte for byte as it was.
"""

import json

import pytest

from m22bol.ledger.access import roles_for
from tests.support import ON_SQLITE, PEOPLE, TEST_PASSWORD, invoke, new_ledger, store_fingerprint

ENROLLED = [
    ["register", "{s}", "--site", "S1", "--consent-date", "2025-01-02"],
    ["assess-eligibility", "{s}", "--date", "2025-01-03", "--her2", "positive", "--er",
     "positive", "--prior-therapy", "none", "--distant-lesions", "2",
     "--all-lesions-curable", "yes", "--lvef", "60", "--ecog", "0"],
    ["enrol", "{s}", "--date", "2025-01-10", "--weight-kg", "60"],
]
TREATED = [*ENROLLED, ["infuse", "{s}", "--cycle", "1", "--date", "2025-01-15",
                       "--weight-kg", "60", "--dose-mg", "324"]]
OPERATED = [*TREATED, ["surgery", "{s}", "--date", "2025-02-01", "--site", "primary"]]

# command -> (what must be true of the subject first, the command itself)
SCENARIOS = {
    "register": ([], ["register", "{s}", "--site", "S1", "--consent-date", "2025-01-02"]),
    "assess-eligibility": (ENROLLED[:1], ENROLLED[1]),
    "enrol": (ENROLLED[:2], ENROLLED[2]),
    "infuse": (ENROLLED, TREATED[-1]),
    "adverse-event": (TREATED, ["adverse-event", "{s}", "--term", "Nausea", "--grade", "1",
                                "--onset", "2025-01-20"]),
    "update-adverse-event": (
        [*TREATED, ["adverse-event", "{s}", "--term", "Nausea", "--grade", "1", "--onset",
                    "2025-01-20", "--id", "AE1"]],
        ["update-adverse-event", "{s}", "AE1", "--date", "2025-01-25", "--grade", "2"]),
    "resolve-adverse-event": (
        [*TREATED, ["adverse-event", "{s}", "--term", "Nausea", "--grade", "1", "--onset",
                    "2025-01-20", "--id", "AE1"]],
        ["resolve-adverse-event", "{s}", "AE1", "--date", "2025-01-26"]),
    "lvef": (TREATED, ["lvef", "{s}", "--date", "2025-01-20", "--percent", "58"]),
    "interrupt": (TREATED, ["interrupt", "{s}", "--date", "2025-01-20", "--reason", "travel"]),
    "resume": ([*TREATED, ["interrupt", "{s}", "--date", "2025-01-20", "--reason", "travel"]],
               ["resume", "{s}", "--date", "2025-01-25", "--reason", "back"]),
    "reduce-dose": (TREATED, ["reduce-dose", "{s}", "--date", "2025-01-20", "--reason",
                              "tolerability"]),
    "discontinue": (TREATED, ["discontinue", "{s}", "--date", "2025-01-20", "--reason",
                              "patient choice"]),
    "surgery": (TREATED, OPERATED[-1]),
    "complication": (OPERATED, ["complication", "{s}", "--date", "2025-02-05",
                                "--clavien-dindo", "II"]),
    "radiotherapy": (TREATED, ["radiotherapy", "{s}", "--start", "2025-02-01", "--end",
                               "2025-02-10", "--location", "liver", "--dose-gy", "50",
                               "--fractions", "5"]),
    "complete-local-treatment": (OPERATED, ["complete-local-treatment", "{s}", "--date",
                                            "2025-02-10"]),
    "pathology": (OPERATED, ["pathology", "{s}", "--date", "2025-02-03", "--ypt", "T0",
                             "--ypn", "N0", "--viable-metastatic-tumour", "not-resected"]),
    "scan": (ENROLLED, ["scan", "{s}", "--date", "2025-01-12", "--target", "L1:liver:30"]),
    "pet": (ENROLLED, ["pet", "{s}", "--date", "2025-01-12", "--sulpeak", "7.5"]),
    "ctdna": (ENROLLED, ["ctdna", "{s}", "--date", "2025-01-12", "--result", "detected"]),
    "contact": (ENROLLED, ["contact", "{s}", "--date", "2025-02-01"]),
    "subsequent-therapy": (ENROLLED, ["subsequent-therapy", "{s}", "--date", "2025-02-01",
                                      "--therapy", "capecitabine"]),
    "death": (TREATED, ["death", "{s}", "--date", "2025-03-01"]),
    "withdraw": (TREATED, ["withdraw", "{s}", "--date", "2025-03-01", "--reason", "moved"]),
    "correct": (ENROLLED, ["correct", "{s}", "{s}#3", "--reason", "scale was off", "--set",
                           "weight_kg=61"]),
    "retract": ([*ENROLLED, ["contact", "{s}", "--date", "2025-02-01"]],
                ["retract", "{s}", "{s}#4", "--reason", "entered for the wrong subject"]),
    "import": (ENROLLED, ["import", "-"]),
}
IMPORT_INPUT = '{{"command": "contact", "subject": "{s}", "date": "2025-02-01"}}\n'


def test_every_entry_command_has_a_scenario():
    from m22bol.ledger.access import ENTRY

    assert set(SCENARIOS) == set(ENTRY)


@pytest.fixture
def url(ledger_url):
    new_ledger(ledger_url).close()
    return ledger_url


def _fill(args, subject):
    return [a.format(s=subject) for a in args]


@ON_SQLITE
@pytest.mark.parametrize("command", sorted(SCENARIOS))
def test_role_matrix(url, command):
    allowed = roles_for(command)
    users = {"nobody": None, "admin": "admin", **PEOPLE}
    for n, (user, role) in enumerate(sorted(users.items(), key=lambda ur: ur[0])):
        subject = f"M22-{n:03d}"
        setup, args = SCENARIOS[command]
        for step in setup:
            assert invoke(_fill(step, subject), url=url).exit_code == 0, step
        stdin = IMPORT_INPUT.format(s=subject) if command == "import" else None
        before = store_fingerprint(url)
        result = invoke([*_fill(args, subject), "--json"], url=url, user=user, input=stdin)
        if role in allowed:
            assert result.exit_code == 0, (user, result.output)
            assert len(store_fingerprint(url)) > len(before)
        else:
            assert result.exit_code == 4, (user, result.output)
            assert json.loads(result.output)["error"]["code"] == "not-permitted"
            assert store_fingerprint(url) == before


def test_site_limited_grant(url):
    assert invoke(["grant", "sara", "data-manager", "--site", "S2"], url=url,
                  user="admin").exit_code == 0
    assert invoke(["reset-password", "sara", "--password-stdin"], url=url, user="admin",
                  input=TEST_PASSWORD + "\n").exit_code == 0
    refused = invoke(_fill(ENROLLED[0], "M22-900"), url=url, user="sara")
    assert refused.exit_code == 4 and "site S1" in refused.output
    done = invoke(["register", "M22-901", "--site", "S2", "--consent-date", "2025-01-02"],
                  url=url, user="sara")
    assert done.exit_code == 0


def test_revoked_role_no_longer_permits(url):
    assert invoke(["revoke", "dm", "data-manager", "--reason", "left the site"], url=url,
                  user="admin").exit_code == 0
    assert invoke(_fill(ENROLLED[0], "M22-950"), url=url, user="dm").exit_code == 4


def test_a_site_limited_user_reads_only_that_sites_subjects_and_tallies(url):
    """Spec: audit, roles: patient and history refused elsewhere (exit 4); status, endpoints,
    safety and deviations count that site only, from the read models and by replay alike."""
    for args in (["grant", "sara", "monitor", "--site", "S2"],
                 ["reset-password", "sara", "--password-stdin"]):
        assert invoke(args, url=url, user="admin", input=TEST_PASSWORD + "\n").exit_code == 0
    for subject, site in (("M22-001", "S1"), ("M22-002", "S1"), ("M22-003", "S2")):
        for step in ENROLLED:
            args = [a.replace("S1", site) for a in _fill(step, subject)]
            assert invoke(args, url=url).exit_code == 0, args

    def ask(*args, user="sara"):
        return invoke([*args, "--json"], url=url, user=user)

    assert ask("patient", "M22-003").exit_code == 0
    for command in ("patient", "history"):
        refused = ask(command, "M22-001")
        assert refused.exit_code == 4 and "site S1" in refused.output, command
    later = "2099-01-01T00:00:00+00:00"
    for args in (["status"], ["status", "--known-at", later]):
        counts = json.loads(ask(*args).output)["baskets"]["all"]
        assert counts["screened"] == 1, args
        assert json.loads(ask(*args, user="mon").output)["baskets"]["all"]["screened"] == 3
    for args in (["endpoints"], ["endpoints", "--cutoff", "2099-01-01"]):
        mine = json.loads(ask(*args).output)["baskets"]["all"]
        everyone = json.loads(ask(*args, user="mon").output)["baskets"]["all"]
        assert (mine["enrolled"], everyone["enrolled"]) == (1, 3), args
