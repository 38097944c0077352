"""The read-model tables (SQLAlchemy Core), in the same database as the events.

Every row is a pure function of one subject's effective timeline as of the projection's tracked
position (or, for `rm_trial` and `rm_baskets`, of the trial's events). Values that are
documents rather than columns to filter on (the `patient` document, a fact's values, what the
rules derived for an entry) are JSON text, so SQLite and PostgreSQL store them alike and the
query path decodes them without a database-specific JSON type.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from m22bol.projections import catalog

metadata = MetaData()

# One row per (projection, application): the last notification id whose effects the projection's
# rows include. Written in the same transaction as those rows; it only ever moves forward.
tracking = Table(
    catalog.TRACKING, metadata,
    Column("projection", String(64), primary_key=True),
    # The library limits application names to 32 characters in its own tracking tables.
    Column("application_name", String(32), primary_key=True),
    Column("notification_id", BigInteger, nullable=False),
)

# One row per projection: a fingerprint of its tables' definition and of how its rows are made.
# A projection whose fingerprint changed (a new build) is dropped and rebuilt from zero.
schema = Table(
    catalog.SCHEMA, metadata,
    Column("projection", String(64), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
)

trial = Table(
    catalog.TRIAL, metadata,
    Column("name", String(64), primary_key=True),
    Column("version", Integer, nullable=False),  # the trial aggregate's version
    Column("protocol_version", String(32), nullable=False),
    Column("protocol_digest", String(64), nullable=False),
    Column("locked", Boolean, nullable=False),
)

baskets = Table(
    catalog.BASKETS, metadata,
    Column("id", String(16), primary_key=True),
    Column("ordinal", Integer, nullable=False),  # order in the protocol: the order of reports
    Column("description", Text, nullable=False),
    Column("regimen", String(64), nullable=False),
    Column("her2", String(16), nullable=False),
    Column("er", String(16), nullable=False),
    Column("prior_therapy", String(32), nullable=False),
)

patient_summary = Table(
    catalog.PATIENT_SUMMARY, metadata,
    Column("subject", String(40), primary_key=True),
    Column("aggregate_id", String(36), nullable=False, unique=True),
    Column("version", Integer, nullable=False),  # entries of the subject the row includes
    Column("site", String(40)),
    Column("status", String(20)),
    Column("basket", String(16)),
    Column("consent_date", Date),
    Column("enrolled", Date),
    Column("death", Date),
    Column("withdrawn", Date),
    Column("treatment_state", String(32)),
    Column("phase", String(32)),
    Column("last_known_alive", Date),
    # Derivations may depend on the day they were made (e.g. what is overdue).
    Column("derived_on", Date, nullable=False),
    # Set when the timeline no longer passes the rules in force (a protocol amendment or a
    # rule change); the other columns are then empty and queries replay that subject instead.
    Column("error", Text),
    Column("document", Text),  # the `patient --json` document: summary and timeline
)
Index("ix_rm_patient_summary_basket", patient_summary.c.basket)

treatment = Table(
    catalog.TREATMENT, metadata,
    Column("subject", String(40), primary_key=True),
    Column("basket", String(16)),
    Column("enrolled", Date),
    Column("treatment_state", String(32)),
    Column("phase", String(32)),
    Column("cycles_given", Integer),
    Column("dose_level_mg_per_kg", Float),
    Column("next_cycle", Integer),
    Column("next_cycle_due", Date),
    Column("last_infusion_date", Date),
    Column("treatment_ended", Date),
    Column("local_treatment_complete", Boolean),
    Column("pcr", Boolean),
    Column("details", Text),  # JSON: interruption, discontinuation, surgeries, radiotherapy
)

# One row per effective treatment or local-treatment fact (corrections applied, retractions gone).
treatment_events = Table(
    catalog.TREATMENT_EVENTS, metadata,
    Column("entry", String(52), primary_key=True),
    Column("subject", String(40), nullable=False, index=True),
    Column("event", String(40), nullable=False),
    Column("date", Date, nullable=False),
    Column("cycle", Integer),
    Column("dose_mg", Float),
    Column("fact", Text, nullable=False),  # JSON: the fact's own values
    Column("derived", Text, nullable=False),  # JSON: what the rules concluded at this entry
)

adverse_events = Table(
    catalog.ADVERSE_EVENTS, metadata,
    Column("subject", String(40), primary_key=True),
    Column("ae_id", String(40), primary_key=True),
    Column("term", Text, nullable=False),
    Column("graded_as", Text),
    Column("onset", Date, nullable=False),
    Column("grade", Integer),
    Column("worst_grade", Integer),
    Column("serious", Boolean),
    Column("related", Boolean),
    Column("resolved", Date),
    Column("document", Text, nullable=False),  # JSON: the safety module's summary of the AE
)

# One row per effective scan, PET, ctDNA sample or LVEF measurement.
assessments = Table(
    catalog.ASSESSMENTS, metadata,
    Column("entry", String(52), primary_key=True),
    Column("subject", String(40), nullable=False, index=True),
    Column("event", String(40), nullable=False),
    Column("date", Date, nullable=False),
    Column("baseline", Boolean),
    Column("result", String(32)),  # overall response, PERCIST category, ctDNA result, LVEF %
    Column("fact", Text, nullable=False),
    Column("derived", Text, nullable=False),
)

endpoint_inputs = Table(
    catalog.ENDPOINT_INPUTS, metadata,
    Column("subject", String(40), primary_key=True),
    Column("basket", String(16)),
    Column("facts", Text, nullable=False),  # JSON of endpoint_inputs.patient_facts(state)
)

# One row per data clarification query (docs/queries.md); `thread` is every step as JSON.
queries = Table(
    catalog.QUERIES, metadata,
    Column("query_id", String(12), primary_key=True),
    Column("number", Integer, nullable=False),  # Q-9 before Q-10
    Column("subject", String(40), nullable=False, index=True),
    Column("site", String(40), index=True),
    Column("entry", String(52), nullable=False),
    Column("field", String(40), nullable=False),
    Column("rule", String(64)),  # the edit check that raised it, if one did
    Column("status", String(12), nullable=False, index=True),
    Column("opened_on", Date, nullable=False),
    Column("last_text", Text),
    Column("thread", Text, nullable=False),
)

# One row per live clinical entry: verified against source or not.
sdv = Table(
    catalog.SDV, metadata,
    Column("entry", String(52), primary_key=True),
    Column("subject", String(40), nullable=False, index=True),
    Column("site", String(40), index=True),
    Column("event", String(40), nullable=False),
    Column("verified", Boolean, nullable=False),
    Column("document", Text, nullable=False),
)

BY_NAME: dict[str, Table] = {t.name: t for t in metadata.tables.values()}


def tables_of(projection: str) -> tuple[Table, ...]:
    return tuple(BY_NAME[name] for name in catalog.projections()[projection])
