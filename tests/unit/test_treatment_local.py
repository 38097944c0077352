"""pCR of one pathology report (spec/endpoints.md: every resected component free of tumour)."""

from __future__ import annotations

import itertools

import pytest

from m22bol.domain.rules.local import pcr

YPT = ["T0", "Tis", "T1", "T2", "T3", "T4", "not-resected"]
YPN = ["N0", "N1", "N2", "N3", "not-resected"]
VIABLE = ["yes", "no", "not-resected"]


@pytest.mark.parametrize(("ypt", "ypn", "viable"), list(itertools.product(YPT, YPN, VIABLE)))
def test_pcr_is_every_resected_component_free_of_invasive_tumour(ypt, ypn, viable):
    resected = [ypt != "not-resected", ypn != "not-resected", viable != "not-resected"]
    free = [ypt in ("T0", "Tis"), ypn == "N0", viable == "no"]
    expected = all(f for f, r in zip(free, resected, strict=True) if r) if any(resected) else None
    assert pcr(ypt, ypn, viable) is expected


def test_examples():
    assert pcr("T0", "N0", "no") is True
    assert pcr("Tis", "not-resected", "not-resected") is True
    assert pcr("T1", "N0", "no") is False
    assert pcr("not-resected", "not-resected", "yes") is False
    assert pcr("not-resected", "not-resected", "not-resected") is None
