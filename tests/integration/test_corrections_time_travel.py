"""Time travel over corrections: after each step of a sequence of entries, corrections,
retractions and a signature, the test captures what `patient`, `history` and `status` printed;
afterwards `--known-at T` for each recorded time T must print exactly that again."""

from __future__ import annotations

import json

import pytest

from tests.support import TEST_PASSWORD, invoke, new_ledger

S, OTHER = "M22-001", "M22-002"
STEPS = [
    ("dm", ["register", S, "--site", "S1", "--consent-date", "2025-01-02"]),
    ("dm", ["assess-eligibility", S, "--date", "2025-01-02", "--her2", "positive", "--er",
            "positive", "--prior-therapy", "none", "--distant-lesions", "2",
            "--all-lesions-curable", "yes", "--lvef", "60", "--ecog", "0"]),
    ("dm", ["enrol", S, "--date", "2025-01-10", "--weight-kg", "60"]),
    ("dm", ["register", OTHER, "--site", "S2", "--consent-date", "2025-01-03"]),
    ("dm", ["infuse", S, "--cycle", "1", "--date", "2025-01-13", "--weight-kg", "60",
            "--dose-mg", "324"]),
    ("inv", ["correct", S, f"{S}#2", "--set", "er=negative", "--reason", "wrong report"]),
    ("dm", ["assess-eligibility", OTHER, "--date", "2025-01-04", "--her2", "positive", "--er",
            "negative", "--prior-therapy", "chemo-anti-her2", "--distant-lesions", "1",
            "--all-lesions-curable", "yes", "--lvef", "58", "--ecog", "1"]),
    ("dm", ["contact", S, "--date", "2025-02-20"]),
    ("inv", ["sign", S, "--meaning", "reviewed", "--password-stdin"]),
    ("dm", ["correct", OTHER, f"{OTHER}#2", "--set", "lvef=45", "--reason", "echo re-read"]),
    ("dm", ["retract", S, f"{S}#6", "--reason", "contact was another patient's"]),
    ("dm", ["death", S, "--date", "2025-03-01", "--cause", "unrelated"]),
    ("dm", ["correct", S, f"{S}#9", "--set", "date=2025-02-27", "--reason", "certificate"]),
]


def query(url: str, *args: str) -> dict:
    result = invoke([*args, "--json"], url=url, user="mon")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_known_at_each_recorded_time_prints_what_was_printed_then(ledger_url):
    url = ledger_url
    new_ledger(url).close()

    seen = []
    for user, args in STEPS:
        result = invoke(args, url=url, user=user, input=TEST_PASSWORD + "\n")
        assert result.exit_code == 0, (args, result.output)
        subject = args[1]
        moment = query(url, "history", subject)["entries"][-1]["recorded_at"]
        seen.append((moment, {s: (query(url, "patient", s), query(url, "history", s))
                              for s in (S, OTHER) if _registered(url, s)},
                     query(url, "status"), query(url, "endpoints")["baskets"]))

    assert seen[-1][1][S][0]["status"] == "dead"  # the sequence did change things
    for moment, subjects, status, tallies in seen:
        for subject, (patient, history) in subjects.items():
            assert query(url, "patient", subject, "--known-at", moment) == patient, moment
            assert query(url, "history", subject, "--known-at", moment) == history, moment
        assert query(url, "status", "--known-at", moment) == status, moment
        assert query(url, "endpoints", "--known-at", moment)["baskets"] == tallies, moment


def _registered(url: str, subject: str) -> bool:
    return invoke(["history", subject], url=url, user="mon").exit_code == 0


@pytest.mark.parametrize("moment", ["2020-01-01T00:00:00+00:00"])
def test_known_at_before_anything_was_recorded_is_bad_input(driver, moment):
    driver.enrolled(S)
    for args in (["patient", S], ["status"]):
        result = invoke([*args, "--known-at", moment], url=driver.ledger.url, user="mon")
        assert result.exit_code == 2, (args, result.output)
