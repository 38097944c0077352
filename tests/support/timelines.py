"""A subject's timeline built fact by fact and walked by the domain alone, without a store."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

from m22bol.domain import events as ev
from m22bol.domain.protocol import bundled_protocol_text, parse_protocol
from m22bol.domain.timeline import derive

PROTOCOL = parse_protocol(bundled_protocol_text())
TODAY = date(2026, 11, 26)
DAY0 = date(2025, 1, 13)  # cycle 1 of every subject below
WEIGHT = 60.0
DOSE = 324.0  # 5.4 mg/kg x 60 kg


def day(n: int) -> date:
    return DAY0 + timedelta(days=n)


class Subject:
    """A subject's timeline built fact by fact, walked with `derive` like the ledger does."""

    def __init__(self, name: str = "S1"):
        self.name = name
        self.entries: list[tuple[str, ev.Fact]] = []
        self._envelope = {"originator_id": uuid4(), "actor": "dm",
                          "recorded_at": datetime(2026, 1, 1, tzinfo=UTC)}
        self.add(ev.Registered, subject=name, site="S1", consent_date=date(2025, 1, 2))
        self.add(ev.EligibilityAssessed, date=date(2025, 1, 2), her2="positive", er="positive",
                 prior_therapy="none", distant_lesions=2, all_lesions_curable=True, lvef=60,
                 ecog=0)
        self.add(ev.Enrolled, date=date(2025, 1, 10), weight_kg=WEIGHT)

    def add(self, cls: type[ev.Fact], **values) -> str:
        entry = f"{self.name}#{len(self.entries) + 1}"
        self.entries.append((entry, cls(originator_version=len(self.entries) + 1,
                                        **self._envelope, **values)))
        return entry

    def infuse(self, cycle: int, when: date) -> str:
        return self.add(ev.InfusionGiven, cycle=cycle, date=when, weight_kg=WEIGHT, dose_mg=DOSE)

    def scan(self, when: date, targets: dict[str, float | None] | None = None,
             nodes: dict[str, float | None] | None = None,
             non_targets: dict[str, str] | None = None, new: tuple[str, ...] = ()) -> str:
        return self.add(
            ev.ScanRecorded, date=when,
            targets=tuple(ev.Lesion(lesion_id=i, organ="liver" if i != "L2" else "lung", mm=mm)
                          for i, mm in (targets or {}).items()),
            nodes=tuple(ev.Lesion(lesion_id=i, organ="axilla", mm=mm)
                        for i, mm in (nodes or {}).items()),
            non_targets=tuple(ev.NonTargetLesion(lesion_id=i, organ="bone", status=s)
                              for i, s in (non_targets or {}).items()),
            new_lesions=new)

    def state(self):
        return derive(self.name, self.entries, PROTOCOL, TODAY)

    def output(self, entry: str) -> dict:
        return self.state().outputs[entry]
