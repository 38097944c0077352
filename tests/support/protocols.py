"""An amended protocol: the bundled one under a new version, with basket V added as data."""

from __future__ import annotations

from m22bol.domain.protocol import bundled_protocol_text

BASKET_V = """
[regimens.datod]
drug = "datopotamab deruxtecan"
dose_levels_mg_per_kg = [6.0, 4.0, 3.0]
dose_tolerance_pct = 5
cycle_length_days = 21
min_days_between_cycles = 18
first_cycle_within_days_of_enrolment = 28
neoadjuvant_cycles = 6
total_cycles = 12

[[baskets]]
id = "V"
description = "de novo oligo-metastatic, ER+/HER2-negative"
regimen = "datod"
strata = { her2 = "negative", er = "positive", prior_therapy = "none" }
"""


def amendment(tmp_path, version="2.0", extra=BASKET_V):
    """The path of a protocol file: the bundled text as `version`, `extra` appended."""
    text = bundled_protocol_text().replace('version = "1.0"', f'version = "{version}"') + extra
    path = tmp_path / f"m22bol-{version}.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)
