"""Names of the projections and their tables.

The query path (`projections.stored`) reads the tables through the event store's own database
connection and only needs their names; the table definitions (`projections.tables`) are loaded
only where rows are written.
"""

from __future__ import annotations

TRACKING = "rm_tracking"
SCHEMA = "rm_schema"

PATIENT_SUMMARY = "rm_patient_summary"
TREATMENT = "rm_treatment"
TREATMENT_EVENTS = "rm_treatment_events"
ADVERSE_EVENTS = "rm_adverse_events"
ASSESSMENTS = "rm_assessments"
ENDPOINT_INPUTS = "rm_endpoint_inputs"
TRIAL = "rm_trial"
BASKETS = "rm_baskets"
QUERIES = "rm_queries"
SDV = "rm_sdv"

# Projection name -> the tables it owns. Each projection has its own tracking position, so a
# projection added later (or rebuilt alone) catches up from zero without touching the others.
_ALL: dict[str, tuple[str, ...]] = {
    "trial": (TRIAL, BASKETS),
    "patient_summary": (PATIENT_SUMMARY,),
    "treatment": (TREATMENT, TREATMENT_EVENTS),
    "adverse_events": (ADVERSE_EVENTS,),
    "assessments": (ASSESSMENTS,),
    "endpoint_inputs": (ENDPOINT_INPUTS,),
    "queries": (QUERIES,),
    "sdv": (SDV,),
}


def projections() -> dict[str, tuple[str, ...]]:
    """The projections this build keeps."""
    return dict(_ALL)
