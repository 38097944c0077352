"""One canonical form for everything hashed, and a separate form for printed answers."""

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from m22bol.domain.canonical import canonical
from m22bol.domain.events import Sealed
from m22bol.domain.trial import TRIAL_ID, seal_digest
from m22bol.projections.document_json import plain, to_json

# The values a seal digest covers: text, whole numbers, lists and objects of them.
SEAL_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(SEAL_VALUES)
def test_the_canonical_form_is_the_one_seal_digests_were_made_with_before(value):
    """Seals were digested over the standard library's sorted, compact, UTF-8 JSON; the shared
    canonical form gives the same bytes for every value a seal holds, so old seals verify."""
    before = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical(value) == before.encode("utf-8")


def test_a_seal_digest_recorded_before_is_unchanged():
    seal = Sealed(originator_id=TRIAL_ID, originator_version=42,
                  recorded_at=datetime(2025, 6, 30, 17, 5, 9, 123456, tzinfo=UTC),
                  actor="admin", digest="", event_count=57,
                  note="Zwischenanalyse \u00e9t\u00e9 \u2014 \"visit\"\t3 \U0001f512",
                  heads=(("0b5c8e1a-6f0e-4a39-9d3c-2f6a3b8d1e77", 15, "ab" * 32),
                         (str(TRIAL_ID), 42, "cd" * 32)))
    # computed by the json.dumps implementation this replaced
    assert seal_digest(seal) == "b0a9c1aa85cda4d4b9b645d7b07c55c3d94271de6e7577c8a81aba28bb1fe9da"


def test_the_printed_form_keeps_key_order_and_is_not_the_canonical_one():
    document = {"subject": "M22-001", "baskets": {"II", "I"}, "at": datetime(2025, 1, 2, 3, 4,
                                                                           tzinfo=UTC)}
    text = to_json(document, indent=True)
    assert text.index('"subject"') < text.index('"baskets"')  # not sorted
    assert '\n  "baskets": [\n    "I",\n    "II"\n  ]' in text  # a set prints sorted
    assert plain(document) == {"subject": "M22-001", "baskets": ["I", "II"],
                               "at": "2025-01-02T03:04:00+00:00"}
    assert to_json(document).encode() != canonical(plain(document))
