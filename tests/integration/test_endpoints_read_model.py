"""`endpoints` and `safety` on the current state read the endpoint-inputs read model; tallied at
any cutoff, those inputs must agree with a replay of every subject cut there."""

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from m22bol.domain.rules import endpoints
from m22bol.projections.documents import safety_document
from m22bol.projections.reader import Reader
from m22bol.projections.replay import replay
from tests.support import invoke, new_ledger

MINI_TRIAL = Path(__file__).parents[1] / "data" / "mini_trial.jsonl"


@pytest.fixture
def loaded(ledger_url):
    new_ledger(ledger_url).close()
    assert invoke(["import", str(MINI_TRIAL)], url=ledger_url).exit_code == 0
    from tests.support import open_ledger

    ledger = open_ledger(ledger_url)
    yield ledger
    ledger.close()


@pytest.mark.parametrize("cutoff", [date(2024, 3, 1), date(2024, 9, 30), date(2025, 12, 31)])
def test_read_model_tallies_equal_the_replay(loaded, cutoff):
    r = replay(loaded, cutoff=cutoff)
    present = replace(Reader(loaded, "admin").inputs(), cutoff=cutoff)  # the read model
    assert endpoints.tally(present.patients, present.protocol, cutoff) == endpoints.tally(
        r.patients, r.protocol, cutoff)
    assert safety_document(present)["baskets"] == safety_document(r)["baskets"]
