"""The hand-written mini-trial (tests/data/mini_trial.jsonl) and its endpoint counts at the
cutoff 2025-12-31, worked out by hand.

The subjects (day n = n days after the subject's first infusion, its day 0):

- A M22-101, basket I, day 0 2024-01-15: ctDNA+ at baseline; CR d61 and d124; ctDNA- d61; PET
  CMR d62; 8 cycles; metastasectomy d168 (complication II-d d172); pathology: only the
  metastasis resected, no viable tumour (pCR); cycles 9-16 (last d336); nausea g1 d3; fatigue
  g1 d380; contact d400.
- B M22-102, I, 2024-02-12: ctDNA+ at baseline and on d63, d105; CR d63, d105, d189; serious
  fatigue g2 from d-3; 6 cycles (last d105), discontinued d110; alopecia g1 d120; contact d300.
- C M22-103, I, 2024-03-11: ctDNA- at baseline; PR d63, d126; 8 cycles, still on treatment;
  contact d200.
- D M22-104, I: enrolled 2025-05-05, never treated; one ctDNA+ sample.
- E M22-201, II, 2024-01-22: ctDNA+; PET baseline, PMD d61; PD (new lesion) d60; 3 cycles (last
  d42), discontinued d62; serious diarrhoea g3 d30; fatigue g2 d100; dies d250.
- F M22-202, II, 2024-04-15: ctDNA+; 3 cycles (last d42); serious pneumonitis g3 d45
  (discontinued by the label), g5 and death d58; no scan after baseline.
- G M22-203, II, 2024-05-13: ctDNA+, ctDNA- d125; PET baseline, PMR d60; SD d62, d125; 6
  cycles; nausea g2 d10; contact d200.
- H M22-301, III, 2024-03-04: ctDNA+, ctDNA- d210; PET baseline, CMR d211; PR d63, d126; 8
  cycles; surgery d170, pathology ypT1 d172 (no pCR), complication IIIb d177; radiotherapy
  d185-d195; cycles 9-11; CR d210, d245; nausea g1 d5; contact d260.
- I M22-302, III, 2024-06-17: no ctDNA baseline (ctDNA- d63); CR d63, d84, PD (new lesion)
  d126; 6 cycles (last d105), discontinued d130; nausea g1 from d-3, g2 d10; contact d300.
- J M22-303, III, 2024-07-15: ctDNA+; PET baseline only; 4 cycles; withdraws d80.
- K M22-401, IV, 2024-03-04: ctDNA+ at baseline and d105, ctDNA- only d400; CR d63, d105, d260;
  8 cycles; radiotherapy d170-d180; cycles 9-12; fatigue g1 d20; contact d420.
- L M22-402, IV, 2024-04-29: ctDNA- at baseline; PET baseline, SMD d60, CMR d380; SD d63, d126,
  PD d189; 8 cycles (last d147), discontinued d192; anaemia g2 d30; dies d450.
- M M22-403, IV, 2025-06-16: ctDNA+ at baseline and d63; SD d63; 5 cycles, on treatment;
  alopecia g1 d25, nausea g2 d150 (2025-11-13).
- N M22-404: screen failure (HER2-negative).

Months are days / 30.4375.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent.parent / "data" / "mini_trial.jsonl"
KM_NONE = {"12": None, "24": None, "60": None}

EXPECTED = {
    # Basket I: A, B, C enrolled and treated; D enrolled only.
    "I": {
        "enrolled": 4, "treated": 3,
        "primary": {
            # A: CR d61 + CR d124 (63 days apart, no PD), ctDNA+ then ctDNA- d61: responder.
            "responders": 1,
            "evaluable": 3,
            # A as above; B: CR d63 + CR d105 (42 days). C only PR.
            "radiologic_cr": 2,
            # A confirmed on d124, before its surgery on d168; B has no local treatment.
            "radiologic_cr_before_local_treatment": 2,
            "ctdna_cleared": 1,  # A only: B stays detected, C was not detected at baseline
            "ctdna_not_informative": 1,  # C (baseline not detected)
        },
        # No PD, no death: A censored d250, B d189, C d126 (all < 12 months: no KM value).
        "progression_free": {"events": 0, "censored": 3, "median_months": None,
                             "km": KM_NONE},
        # Censored at the last fact: A d400 (13.1 months, so S(12) = 1), B d300, C d200.
        "overall_survival": {"events": 0, "censored": 3, "median_months": None,
                             "km": {"12": 1.0, "24": None, "60": None}},
        # A: ypT and ypN not resected, metastasis without viable tumour: pCR.
        "pathological_complete_response": {"patients": 1, "operated": 1},
        # A: baseline PET d-3, CMR d62.
        "metabolic_response": {"patients": 1, "pet_evaluable": 1},
        "ctdna_clearance": {"patients": 1, "baseline_detected": 2},  # A; A and B
        "safety": {
            # A: nausea d3 (fatigue d380 is after the window: 16 cycles done d336, + 30 = d366).
            # B: alopecia d120, within 30 days of the last infusion d105 (treatment stopped
            # d110); its serious fatigue began on d-3 and never worsened: not emergent.
            "patients_with_teae": 2, "grade3plus": 0, "serious": 0, "grade5": 0,
            "pneumonitis": 0, "related": 0,
            "clavien_dindo_3plus": 0,  # A's complication is II-d
        },
    },
    # Basket II: E, F, G.
    "II": {
        "enrolled": 3, "treated": 3,
        "primary": {"responders": 0, "evaluable": 3, "radiologic_cr": 0,
                    "radiologic_cr_before_local_treatment": 0,
                    "ctdna_cleared": 1,  # G: ctDNA- d125 (no CR, so not a responder)
                    "ctdna_not_informative": 0},
        # F death d58 (1.9055 months), E PD d60 (1.9713), G censored d125 (4.1068).
        # S: 2/3 after F, 1/3 after E: the median is E's time, 1.97. Follow-up < 12 months.
        "progression_free": {"events": 2, "censored": 1, "median_months": 1.97, "km": KM_NONE},
        # F d58 (1.9055) death; G censored d200 (6.5708); E death d250 (8.2136).
        # S: 2/3, then 0 at 8.2136 (one at risk): the median is 8.21. The curve is at 0 by
        # then, so every later estimate is 0 too, follow-up or not.
        "overall_survival": {"events": 2, "censored": 1, "median_months": 8.21,
                             "km": {"12": 0.0, "24": 0.0, "60": 0.0}},
        "pathological_complete_response": {"patients": 0, "operated": 0},
        # E: baseline PET and PMD d61 (evaluable, no response); G: baseline and PMR d60.
        "metabolic_response": {"patients": 1, "pet_evaluable": 2},
        "ctdna_clearance": {"patients": 1, "baseline_detected": 3},
        "safety": {
            # E: serious diarrhoea g3 d30 (fatigue d100 is after last infusion d42 + 30 = d72);
            # F: serious pneumonitis g3 d45, g5 d58; G: nausea g2 d10.
            "patients_with_teae": 3, "grade3plus": 2, "serious": 2, "grade5": 1,
            "pneumonitis": 1, "related": 0, "clavien_dindo_3plus": 0,
        },
    },
    # Basket III: H, I, J.
    "III": {
        "enrolled": 3, "treated": 3,
        "primary": {
            # H: CR d210 + CR d245 (35 days, no PD), ctDNA+ then ctDNA- d210: responder.
            "responders": 1, "evaluable": 3, "radiologic_cr": 1,
            # H's CR came after its surgery on d170; I's CRs (d63, d84) are 21 days apart and
            # the next assessment (d126) is PD: not confirmed.
            "radiologic_cr_before_local_treatment": 0,
            "ctdna_cleared": 1,  # H
            "ctdna_not_informative": 1,  # I: no sample on or before day 0
        },
        # J censored at day 0 (last scan d-4); I PD d126 (4.1396 months) with two at risk
        # (I, H): S = 1/2, median 4.14; H censored d245 (8.0493).
        "progression_free": {"events": 1, "censored": 2, "median_months": 4.14, "km": KM_NONE},
        # H censored d260, I d300, J d80 (withdrawal): follow-up < 12 months.
        "overall_survival": {"events": 0, "censored": 3, "median_months": None, "km": KM_NONE},
        "pathological_complete_response": {"patients": 0, "operated": 1},  # H: ypT1
        # H: baseline PET, CMR d211; J: baseline PET only.
        "metabolic_response": {"patients": 1, "pet_evaluable": 1},
        "ctdna_clearance": {"patients": 1, "baseline_detected": 2},  # H; H and J
        "safety": {
            # H: nausea d5; I: nausea from d-3 rises to g2 on d10, inside the window.
            "patients_with_teae": 2, "grade3plus": 0, "serious": 0, "grade5": 0,
            "pneumonitis": 0, "related": 0,
            "clavien_dindo_3plus": 1,  # H: IIIb on d177, 7 days after surgery
        },
    },
    # Basket IV: K, L, M.
    "IV": {
        "enrolled": 3, "treated": 3,
        "primary": {
            # K: CR d63 + CR d105 before its radiotherapy (d170); ctDNA- only on d400, after
            # the 365 days: not cleared for the primary endpoint, not a responder.
            "responders": 0, "evaluable": 3, "radiologic_cr": 1,
            "radiologic_cr_before_local_treatment": 1,
            "ctdna_cleared": 0,
            "ctdna_not_informative": 1,  # L
        },
        # M censored d63 (2.0698); L PD d189 (6.2094) with two at risk (L, K): S = 1/2,
        # median 6.21; K censored d260 (8.5421).
        "progression_free": {"events": 1, "censored": 2, "median_months": 6.21, "km": KM_NONE},
        # M censored d150 (4.928), K censored d420 (13.7988), L death d450 (14.7844) alone
        # at risk: S = 0, median 14.78. S(12 months) = 1; at 24 and 60 the curve is at 0.
        "overall_survival": {"events": 1, "censored": 2, "median_months": 14.78,
                             "km": {"12": 1.0, "24": 0.0, "60": 0.0}},
        "pathological_complete_response": {"patients": 0, "operated": 0},
        # L: baseline PET, SMD d60 (evaluable); its CMR on d380 is after the 365 days.
        "metabolic_response": {"patients": 0, "pet_evaluable": 1},
        "ctdna_clearance": {"patients": 1, "baseline_detected": 2},  # K (no time limit); K, M
        "safety": {
            # K fatigue d20; L anaemia d30; M alopecia d25 and nausea d150, while treatment
            # goes on (the window stays open up to the cutoff).
            "patients_with_teae": 3, "grade3plus": 0, "serious": 0, "grade5": 0,
            "pneumonitis": 0, "related": 0, "clavien_dindo_3plus": 0,
        },
    },
    "all": {
        "enrolled": 13,  # 4 + 3 + 3 + 3; N (screen failure) is never enrolled
        "treated": 12,
        "primary": {"responders": 2,  # A, H
                    "evaluable": 12,
                    "radiologic_cr": 4,  # A, B, H, K
                    "radiologic_cr_before_local_treatment": 3,  # A, B, K
                    "ctdna_cleared": 3,  # A, G, H
                    "ctdna_not_informative": 3},  # C, I, L
        # PFS, in days: J 0c, F 58e, E 60e, M 63c, G 125c, I 126e, C 126c, B 189c, L 189e,
        # H 245c, A 250c, K 260c (events before censorings on a tie).
        # S = 10/11 (d58), 9/11 (d60), 9/11 * 6/7 = 54/77 (d126), 54/77 * 4/5 = 216/385
        # = 0.561 (d189): never <= 1/2, so no median; follow-up ends at 8.5 months.
        "progression_free": {"events": 4, "censored": 8, "median_months": None,
                             "km": KM_NONE},
        # OS, in days: F 58e, J 80c, M 150c, C 200c, G 200c, E 250e, H 260c, B 300c, I 300c,
        # A 400c, K 420c, L 450e.
        # S = 11/12 (d58), 11/12 * 6/7 = 11/14 = 0.7857 (d250), 0 (d450, one at risk).
        # S(12 months = 365.25 days) = 0.7857; median 450 days = 14.78 months; follow-up
        # ends at 14.78 months with the curve at 0, so 0 at 24 and 60 months.
        "overall_survival": {"events": 3, "censored": 9, "median_months": 14.78,
                             "km": {"12": 0.7857, "24": 0.0, "60": 0.0}},
        "pathological_complete_response": {"patients": 1, "operated": 2},  # A; A, H
        "metabolic_response": {"patients": 3, "pet_evaluable": 5},  # A, G, H; A, E, G, H, L
        "ctdna_clearance": {"patients": 4, "baseline_detected": 9},  # A, G, H, K
        "safety": {"patients_with_teae": 10, "grade3plus": 2, "serious": 2, "grade5": 1,
                   "pneumonitis": 1, "related": 0, "clavien_dindo_3plus": 1},
    },
}


def without_intervals(value):
    """A tally document without its 95% intervals (the counts are what EXPECTED holds)."""
    if isinstance(value, dict):
        return {k: without_intervals(v) for k, v in value.items() if not k.endswith("_ci95")}
    return value
