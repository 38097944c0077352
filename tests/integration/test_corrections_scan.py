"""A correction of a baseline scan: every later RECIST response is derived again from the
corrected baseline, the endpoint tallies follow, and `history` shows both values with the
reason (as does the ODM export)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from tests.support import invoke

S = "M22-001"
ODM = "{http://www.cdisc.org/ns/odm/v1.3}"
TYPED = [{"lesion_id": "L1", "organ": "liver", "mm": 20.0},
         {"lesion_id": "L2", "organ": "lung", "mm": 20.0}]
MEASURED = [{"lesion_id": "L1", "organ": "liver", "mm": 30.0},
            {"lesion_id": "L2", "organ": "lung", "mm": 20.0}]


def query(url: str, *args: str) -> dict:
    result = invoke([*args, "--json"], url=url, user="mon")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_correcting_the_baseline_scan_rederives_responses_and_tallies(driver, tmp_path):
    url = driver.ledger.url
    driver.enrolled(S, weight=60)
    # Baseline typed as 20 + 20 = 40 mm; the radiology report says 30 + 20 = 50 mm.
    baseline = driver.do("scan", subject=S, date="2025-01-08", target=["L1:liver:20",
                                                                        "L2:lung:20"])
    for cycle, day in enumerate(["2025-01-13", "2025-02-03", "2025-02-24"], start=1):
        driver.do("infuse", subject=S, cycle=cycle, date=day, weight_kg=60, dose_mg=324)
    later = driver.do("scan", subject=S, date="2025-03-10", target=["L1:liver:24",
                                                                     "L2:lung:24"])
    assert later["overall_response"] == "PD"  # 48 mm: +20% and +8 mm over 40
    before = query(url, "endpoints")
    assert before["baskets"]["I"]["progression_free"]["events"] == 1
    moment = query(url, "history", S)["entries"][-1]["recorded_at"]

    result = invoke(["correct", S, baseline["entry"], "--set",
                     "targets=" + json.dumps(MEASURED), "--reason",
                     "L1 re-measured from the radiology report", "--json"], url=url)

    assert result.exit_code == 0, result.output
    assessments = {a["entry"]: a for a in query(url, "patient", S)["assessments"]}
    assert assessments[later["entry"]]["overall_response"] == "SD"  # 48 mm: -4% from 50
    assert assessments[later["entry"]]["baseline_sum_mm"] == 50.0
    after = query(url, "endpoints")
    assert after["baskets"]["I"]["progression_free"]["events"] == 0
    assert query(url, "endpoints", "--known-at", moment)["baskets"]["I"][
        "progression_free"] == before["baskets"]["I"]["progression_free"]

    change = query(url, "history", S)["entries"][-1]
    assert change["old_values"] == {"targets": TYPED}
    assert change["new_values"] == {"targets": MEASURED}
    assert change["reason"] == "L1 re-measured from the radiology report"
    # What the later scan showed when it was entered stays in its record.
    assert driver.ledger.require_patient(S).event_of(later["entry"]).response[
        "overall_response"] == "PD"

    out = tmp_path / "subject.xml"
    assert invoke(["audit", "export", "--format", "odm", "--subject", S, "--out", str(out)],
                  url=url, user="aud").exit_code == 0
    items = [i for i in ET.parse(out).getroot().iter(f"{ODM}ItemData")
             if i.get("ItemOID") == "IT.ScanRecorded.targets"]
    baseline_items = [(json.loads(i.get("Value")), i.get("TransactionType")) for i in items
                      if json.loads(i.get("Value"))[0]["mm"] in (20.0, 30.0)]
    assert baseline_items == [(TYPED, None), (MEASURED, "Update")]
    reason = items[-1].find(f"{ODM}AuditRecord/{ODM}ReasonForChange")
    assert reason.text == "L1 re-measured from the radiology report"
