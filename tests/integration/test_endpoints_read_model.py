"""`endpoints` and `safety` on the current state read the endpoint-inputs read model; they
must agree with a replay of every subject, at every cutoff."""

from datetime import date
from pathlib import Path

import pytest

from m22bol.domain.rules import endpoints
from m22bol.ledger.analysis import endpoints_report, replay, safety_document, safety_report
from tests.support import invoke, new_ledger

MINI_TRIAL = Path(__file__).parents[1] / "data" / "mini_trial.jsonl"


@pytest.fixture
def loaded(ledger_url):
    new_ledger(ledger_url).close()
    assert invoke(["import", str(MINI_TRIAL)], url=ledger_url).exit_code == 0
    from m22bol.ledger.app import TrialLedger

    ledger = TrialLedger(ledger_url)
    yield ledger
    ledger.close()


@pytest.mark.parametrize("cutoff", [date(2024, 3, 1), date(2024, 9, 30), date(2025, 12, 31)])
def test_read_model_tallies_equal_the_replay(loaded, cutoff):
    r = replay(loaded, cutoff=cutoff)
    assert endpoints_report(loaded, cutoff=cutoff)["baskets"] == endpoints.tally(
        r.patients, r.protocol, cutoff)
    assert safety_report(loaded, cutoff=cutoff)["baskets"] == safety_document(r)["baskets"]
