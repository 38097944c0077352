"""The role matrix of spec/audit.md: every entry command as every role, through the CLI.

A permitted role gets the entry done; any other role (and a user with no grant) is refused
with exit 4 and the store is left byte for byte as it was.
"""

import json

import pytest

from m22bol.ledger.access import roles_for
from tests.support import ON_SQLITE, PEOPLE, TEST_PASSWORD, invoke, new_ledger, store_fingerprint
from tests.support.scenarios import ENROLLED, IMPORT_INPUT, SCENARIOS, TREATED, fill


def test_every_entry_command_has_a_scenario():
    from m22bol.ledger.access import ENTRY

    assert set(SCENARIOS) == set(ENTRY)


@pytest.fixture
def url(ledger_url):
    new_ledger(ledger_url).close()
    return ledger_url


@ON_SQLITE
@pytest.mark.parametrize("command", sorted(SCENARIOS))
def test_role_matrix(url, command):
    allowed = roles_for(command)
    users = {"nobody": None, "admin": "admin", **PEOPLE}
    for n, (user, role) in enumerate(sorted(users.items(), key=lambda ur: ur[0])):
        subject = f"M22-{n:03d}"
        setup, args = SCENARIOS[command]
        for step in setup:
            assert invoke(fill(step, subject), url=url).exit_code == 0, step
        stdin = IMPORT_INPUT.format(s=subject) if command == "import" else None
        before = store_fingerprint(url)
        result = invoke([*fill(args, subject), "--json"], url=url, user=user, input=stdin)
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
    refused = invoke(fill(ENROLLED[0], "M22-900"), url=url, user="sara")
    assert refused.exit_code == 4 and "site S1" in refused.output
    done = invoke(["register", "M22-901", "--site", "S2", "--consent-date", "2025-01-02"],
                  url=url, user="sara")
    assert done.exit_code == 0


def test_revoked_role_no_longer_permits(url):
    assert invoke(["revoke", "dm", "data-manager", "--reason", "left the site"], url=url,
                  user="admin").exit_code == 0
    assert invoke(fill(ENROLLED[0], "M22-950"), url=url, user="dm").exit_code == 4


# --- data clarification queries and source data verification ---------------------------------

QUERY_STEPS = {
    "query open": ["query", "open", "{s}", "{s}#4", "--field", "dose_mg", "--text", "check"],
    "query answer": ["query", "answer", "{q}", "--text", "checked"],
    "query close": ["query", "close", "{q}"],
    "query reopen": ["query", "reopen", "{q}", "--text", "still wrong"],
    "verify-source": ["verify-source", "{s}", "{s}#4"],
}
# The state each step needs first: the query it acts on, opened (and answered) by others.
QUERY_SETUP = {"query answer": (), "query close": (), "query reopen": ("answer",),
               "query open": None, "verify-source": None}


def test_every_query_command_has_a_scenario():
    from m22bol.ledger.access import CLARIFICATIONS

    assert set(QUERY_STEPS) == set(CLARIFICATIONS) - {"queries --refresh"}


@ON_SQLITE
@pytest.mark.parametrize("command", sorted(QUERY_STEPS))
def test_query_role_matrix(url, command):
    """A data manager cannot verify source, a monitor cannot answer; the others as the table
    says. Refusals leave the store as it was."""
    allowed = roles_for(command)
    users = {"nobody": None, "admin": "admin", **PEOPLE}
    for n, (user, role) in enumerate(sorted(users.items(), key=lambda ur: ur[0])):
        subject = f"M22-{n:03d}"
        for step in TREATED:
            assert invoke(fill(step, subject), url=url).exit_code == 0, step
        query = None
        if QUERY_SETUP[command] is not None:
            opened = invoke(["query", "open", subject, f"{subject}#4", "--field", "dose_mg",
                             "--text", "check", "--json"], url=url, user="mon")
            query = json.loads(opened.output)["query_id"]
            if "answer" in QUERY_SETUP[command]:
                assert invoke(["query", "answer", query, "--text", "ok"], url=url,
                              user="inv").exit_code == 0
        args = [a.format(s=subject, q=query) for a in QUERY_STEPS[command]]
        before = store_fingerprint(url)
        result = invoke([*args, "--json"], url=url, user=user)
        if role in allowed:
            assert result.exit_code == 0, (user, result.output)
            assert len(store_fingerprint(url)) > len(before)
        else:
            assert result.exit_code == 4, (user, result.output)
            assert store_fingerprint(url) == before


@ON_SQLITE
def test_a_site_limited_monitor_cannot_query_another_sites_subject(url):
    for step in TREATED:
        assert invoke(fill(step, "M22-700"), url=url).exit_code == 0
    for args in (["grant", "mona", "monitor", "--site", "S2"],
                 ["reset-password", "mona", "--password-stdin"]):
        assert invoke(args, url=url, user="admin", input=TEST_PASSWORD + "\n").exit_code == 0
    before = store_fingerprint(url)
    for args in (["query", "open", "M22-700", "M22-700#4", "--field", "dose_mg", "--text", "x"],
                 ["verify-source", "M22-700", "M22-700#4"]):
        refused = invoke(args, url=url, user="mona")
        assert refused.exit_code == 4 and "site S1" in refused.output
    assert store_fingerprint(url) == before
    # Her lists cover her site only.
    assert invoke(["query", "open", "M22-700", "M22-700#4", "--field", "dose_mg", "--text",
                   "x"], url=url, user="mon").exit_code == 0
    listed = invoke(["queries", "--json"], url=url, user="mona")
    assert json.loads(listed.output)["queries"] == []
    assert json.loads(invoke(["sdv", "--json"], url=url, user="mona").output)["sites"] == []


def test_a_site_limited_user_reads_only_that_sites_subjects_and_tallies(url):
    """Spec: audit, roles: patient and history refused elsewhere (exit 4); status, endpoints,
    safety and deviations count that site only, from the read models and by replay alike."""
    for args in (["grant", "sara", "monitor", "--site", "S2"],
                 ["reset-password", "sara", "--password-stdin"]):
        assert invoke(args, url=url, user="admin", input=TEST_PASSWORD + "\n").exit_code == 0
    for subject, site in (("M22-001", "S1"), ("M22-002", "S1"), ("M22-003", "S2")):
        for step in ENROLLED:
            args = [a.replace("S1", site) for a in fill(step, subject)]
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
