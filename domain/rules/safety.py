"""Rules for this part of the timeline; see spec/treatment.md and spec/recist.md."""

from __future__ import annotations

HANDLERS: dict = {}
