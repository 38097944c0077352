"""The aggregates' natural ids: the trial's and each subject's. Apart from the aggregates so
that a reader of the store (a query that opens no write side) names a chain without loading
the event models."""

from __future__ import annotations

from functools import lru_cache
from uuid import NAMESPACE_URL, UUID, uuid5

TRIAL_ID: UUID = uuid5(NAMESPACE_URL, "urn:m22bol:trial")
_SUBJECTS = uuid5(NAMESPACE_URL, "urn:m22bol:subject")


@lru_cache(maxsize=4096)
def patient_id(subject: str) -> UUID:
    """Natural id: a second `register` of the same subject collides in the store. Cached: an
    import asks it twice a line, and a SHA-1 each time was 3 % of the import."""
    return uuid5(_SUBJECTS, subject)
