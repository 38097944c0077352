"""A refused command writes nothing: the SQLite file is byte for byte what it was, and on
every store the stored events are unchanged. One test per kind of refusal."""

import glob
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import invoke, new_ledger, store_fingerprint

SUBJECT = ["register", "M22-001", "--site", "S1", "--consent-date", "2025-01-02"]


def file_bytes(url: str) -> dict[str, bytes]:
    path = url.removeprefix("sqlite:///")
    return {name: open(name, "rb").read() for name in sorted(glob.glob(path + "*"))}


@pytest.fixture
def url(ledger_url):
    new_ledger(ledger_url).close()
    assert invoke(SUBJECT, url=ledger_url).exit_code == 0
    return ledger_url


REFUSALS = {
    # kind: (command line, user, expected exit code, expected error code)
    "rule": (SUBJECT, "dm", 3, "rule"),
    "rule-date": (["contact", "M22-001", "--date", "2024-12-31"], "dm", 3, "rule"),
    "bad-value": (["contact", "M22-001", "--date", "2025-13-01"], "dm", 2, "bad-input"),
    "unknown-subject": (["contact", "M22-404", "--date", "2025-02-01"], "dm", 2, "bad-input"),
    "out-of-range": (["enrol", "M22-001", "--date", "2025-01-03", "--weight-kg", "301"], "dm",
                     2, "bad-input"),
    "role": (["contact", "M22-001", "--date", "2025-02-01"], "mon", 4, "not-permitted"),
    "no-grant": (["contact", "M22-001", "--date", "2025-02-01"], "nobody", 4, "not-permitted"),
}


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_refusal_leaves_store_unchanged(url, kind):
    args, user, code, error = REFUSALS[kind]
    before, files = store_fingerprint(url), file_bytes(url) if url.startswith("sqlite") else {}
    result = invoke([*args, "--json"], url=url, user=user)
    assert result.exit_code == code, result.output
    assert json.loads(result.output)["error"]["code"] == error
    assert store_fingerprint(url) == before
    if files:
        assert file_bytes(url) == files


def test_unknown_option_is_exit_2_and_writes_nothing(url):
    before = store_fingerprint(url)
    result = invoke(["contact", "M22-001", "--date", "2025-02-01", "--colour", "red"], url=url)
    assert result.exit_code == 2
    assert store_fingerprint(url) == before


def test_failed_import_line_rolls_back_the_whole_file(url):
    lines = "\n".join([
        json.dumps({"command": "contact", "subject": "M22-001", "date": "2025-02-01"}),
        json.dumps({"command": "contact", "subject": "M22-001", "date": "2025-02-02"}),
        json.dumps({"command": "contact", "subject": "M22-001", "date": "2099-01-01"}),
    ])
    before = store_fingerprint(url)
    result = invoke(["import", "-"], url=url, input=lines)
    assert result.exit_code == 3
    assert "line 3" in result.output
    assert store_fingerprint(url) == before


def test_a_bad_import_line_is_reported_before_a_refusal_on_an_earlier_line(url):
    """Each line is parsed once, as it is applied; a bad line anywhere is still what the
    person hears about, as when every line was checked before any was applied."""
    lines = "\n".join([
        json.dumps({"command": "contact", "subject": "M22-001", "date": "2025-02-01"}),
        json.dumps({"command": "contact", "subject": "M22-001", "date": "2099-01-01"}),
        json.dumps({"command": "contact", "subject": "M22-001", "date": "2025-02-03"}),
        "",
        json.dumps({"command": "contact", "subject": "M22-001", "date": "2025-02-30"}),
        json.dumps({"command": "contact", "subject": "M22-001", "colour": "red"}),
    ])
    before = store_fingerprint(url)
    result = invoke(["import", "-"], url=url, input=lines)
    assert result.exit_code == 2, result.output
    assert "line 5: date" in result.output and "line 2" not in result.output
    assert store_fingerprint(url) == before


# --- hypothesis: malformed input never ends in a traceback and never writes ------------------

FIELDS = ["subject", "date", "site", "consent_date", "cycle", "weight_kg", "dose_mg", "grade",
          "term", "onset", "percent", "her2", "target", "result", "reason", "set", "entry"]
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**30, max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["2025-02-30", "2025-1-1", "0000-00-00", "yes", "NE", "L1::x", "M22-001",
                     "M22-001#999", "1e308", "-1", "９"]),
    st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=5),
                                                               st.integers(), max_size=2),
)
COMMANDS = ["register", "assess-eligibility", "enrol", "infuse", "adverse-event", "scan",
            "correct", "retract", "death", "grant", "lock", "import", "nonsense", None, 7]
RECORDS = st.fixed_dictionaries(
    {"command": st.sampled_from(COMMANDS)},
    optional={name: JUNK for name in FIELDS},
)
LINES = st.one_of(
    RECORDS.map(lambda r: json.dumps(r).encode()),
    st.binary(max_size=40),
    st.sampled_from([b"\xff\xfe\x00", b"[1,2]", b"{", b'"text"', b"{}", b"null", b"[" * 5000]),
)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINES, min_size=1, max_size=3))
def test_malformed_jsonl_is_a_clear_error(sqlite_url_ready, lines):
    url, before = sqlite_url_ready
    result = invoke(["import", "-"], url=url, input=b"\n".join(lines))
    assert result.exit_code in (0, 2, 3, 4), result.output
    assert "Traceback" not in result.output
    if result.exit_code:
        assert result.output.startswith("error: ")
        assert store_fingerprint(url) == before
    else:  # a junk line that happens to be a valid record is fine; undo by a fresh ledger
        sqlite_url_ready[1] = store_fingerprint(url)


ARG = st.one_of(st.sampled_from(["--date", "--cycle", "--grade", "--weight-kg", "--json", "--x",
                                 "M22-001", "2025-01-01", "-1", "NaN", "", "--", "--help=1"]),
                st.text(max_size=12))


@settings(max_examples=600, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(COMMANDS[:-2] + ["status", "patient", "history", "bogus"]),
       args=st.lists(ARG, max_size=6))
def test_malformed_arguments_are_a_clear_error(sqlite_url_ready, command, args):
    url, before = sqlite_url_ready
    result = invoke([command, *args], url=url)
    assert result.exit_code in (0, 2, 3, 4), result.output
    assert "Traceback" not in result.output
    if result.exit_code:
        assert store_fingerprint(url) == before
    else:
        sqlite_url_ready[1] = store_fingerprint(url)


@pytest.fixture
def sqlite_url_ready(sqlite_url):
    new_ledger(sqlite_url).close()
    assert invoke(SUBJECT, url=sqlite_url).exit_code == 0
    return [sqlite_url, store_fingerprint(sqlite_url)]
