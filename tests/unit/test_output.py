"""The text helpers: numbers in a column line up, and nothing of a cell is lost doing it."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from m22bol.cli.output import align_numbers, table

counts = st.builds(lambda n, d: f"{n}/{d} ({100 * n / d:.1f}%)",
                   st.integers(0, 999), st.integers(1, 9999))
cells = st.lists(st.one_of(counts, st.sampled_from(["not reached", "-"]),
                           st.floats(0, 1e4, allow_nan=False).map(lambda x: f"{x:.2f}"),
                           st.integers(0, 10**6)), min_size=1, max_size=30)


@given(cells)
def test_aligning_only_pads_in_front_and_lines_up_the_leading_numbers(column):
    aligned = align_numbers(column)
    assert [str(a).lstrip() for a in aligned] == [str(c) for c in column]
    ends = {len(re.match(r"^ *[\d./]+", a).group()) for a in aligned
            if isinstance(a, str) and re.match(r"^ *\d", a)}
    assert len(ends) <= 1


@given(cells)
def test_a_table_keeps_the_alignment(column):
    rows = [{"value": v} for v in align_numbers(column)]
    body = table(rows).splitlines()[2:]
    ends = {len(re.match(r"^ *[\d./]+", line).group()) for line, cell in zip(body, column,
                                                                              strict=True)
            if isinstance(cell, str) and re.match(r"^\d", cell)}
    assert len(ends) <= 1
