"""The read-model tables, in the same database as the events, as plain definitions: each
makes its own `CREATE TABLE` for SQLite and PostgreSQL, and the runner writes them with the
event store's own connection, so no entry or query imports an ORM (SQLAlchemy took about 0.2 s
of every entry's start).

Every row is a pure function of one subject's effective timeline as of the projection's tracked
position (or, for `rm_trial` and `rm_baskets`, of the trial's events). Values that are
documents rather than columns to filter on (the `patient` document, a fact's values, what the
rules derived for an entry) are JSON text, so SQLite and PostgreSQL store them alike and the
query path decodes them without a database-specific JSON type.
"""

from __future__ import annotations

from dataclasses import dataclass

from m22bol.projections import catalog


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a standard SQL type name; `projections.ddl` maps it for each database
    primary_key: bool = False
    nullable: bool = True
    unique: bool = False
    index: bool = False


def String(length: int) -> str:  # noqa: N802 - reads as the column type it names
    return f"VARCHAR({length})"


BigInteger, Boolean, Date, Float, Integer, Text = (
    "BIGINT", "BOOLEAN", "DATE", "FLOAT", "INTEGER", "TEXT")


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]

    @property
    def primary_key(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.primary_key)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def indexes(self) -> list[tuple[str, str]]:
        """(index name, column) of each index, in name order."""
        return sorted((f"ix_{self.name}_{c.name}", c.name) for c in self.columns if c.index)


def _table(name: str, *columns: Column) -> Table:
    return Table(name, columns)

# One row per (projection, application): the last notification id whose effects the projection's
# rows include. Written in the same transaction as those rows; it only ever moves forward.
tracking = _table(
    catalog.TRACKING,
    Column("projection", String(64), primary_key=True),
    # The library limits application names to 32 characters in its own tracking tables.
    Column("application_name", String(32), primary_key=True),
    Column("notification_id", BigInteger, nullable=False),
)

# One row per projection: a fingerprint of its tables' definition and of how its rows are made.
# A projection whose fingerprint changed (a new build) is dropped and rebuilt from zero.
schema = _table(
    catalog.SCHEMA,
    Column("projection", String(64), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
)

trial = _table(
    catalog.TRIAL,
    Column("name", String(64), primary_key=True),
    Column("version", Integer, nullable=False),  # the trial aggregate's version
    Column("protocol_version", String(32), nullable=False),
    Column("protocol_digest", String(64), nullable=False),
    Column("locked", Boolean, nullable=False),
)

baskets = _table(
    catalog.BASKETS,
    Column("id", String(16), primary_key=True),
    Column("ordinal", Integer, nullable=False),  # order in the protocol: the order of reports
    Column("description", Text, nullable=False),
    Column("regimen", String(64), nullable=False),
    Column("her2", String(16), nullable=False),
    Column("er", String(16), nullable=False),
    Column("prior_therapy", String(32), nullable=False),
)

patient_summary = _table(
    catalog.PATIENT_SUMMARY,
    Column("subject", String(40), primary_key=True),
    Column("aggregate_id", String(36), nullable=False, unique=True),
    Column("version", Integer, nullable=False),  # entries of the subject the row includes
    Column("site", String(40)),
    Column("status", String(20)),
    Column("basket", String(16), index=True),
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
    # The first day a timed edit check may find something (clarifications.checks_due; the
    # earliest date when one is found on any day, empty when none can be): the daily sweep
    # loads only the subjects due by its day (ledger.app, docs/decisions.md).
    Column("checks_due", Date, index=True),
)

treatment = _table(
    catalog.TREATMENT,
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
treatment_events = _table(
    catalog.TREATMENT_EVENTS,
    Column("entry", String(52), primary_key=True),
    Column("subject", String(40), nullable=False, index=True),
    Column("event", String(40), nullable=False),
    Column("date", Date, nullable=False),
    Column("cycle", Integer),
    Column("dose_mg", Float),
    Column("fact", Text, nullable=False),  # JSON: the fact's own values
    Column("derived", Text, nullable=False),  # JSON: what the rules concluded at this entry
)

adverse_events = _table(
    catalog.ADVERSE_EVENTS,
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
assessments = _table(
    catalog.ASSESSMENTS,
    Column("entry", String(52), primary_key=True),
    Column("subject", String(40), nullable=False, index=True),
    Column("event", String(40), nullable=False),
    Column("date", Date, nullable=False),
    Column("baseline", Boolean),
    Column("result", String(32)),  # overall response, PERCIST category, ctDNA result, LVEF %
    Column("fact", Text, nullable=False),
    Column("derived", Text, nullable=False),
)

endpoint_inputs = _table(
    catalog.ENDPOINT_INPUTS,
    Column("subject", String(40), primary_key=True),
    Column("basket", String(16)),
    Column("facts", Text, nullable=False),  # JSON of endpoint_inputs.patient_facts(state)
)

# One row per data clarification query (docs/queries.md); `thread` is every step as JSON.
queries = _table(
    catalog.QUERIES,
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
sdv = _table(
    catalog.SDV,
    Column("entry", String(52), primary_key=True),
    Column("subject", String(40), nullable=False, index=True),
    Column("site", String(40), index=True),
    Column("event", String(40), nullable=False),
    Column("verified", Boolean, nullable=False),
    Column("document", Text, nullable=False),
)

ALL: tuple[Table, ...] = (tracking, schema, trial, baskets, patient_summary, treatment,
                          treatment_events, adverse_events, assessments, endpoint_inputs, queries,
                          sdv)
BY_NAME: dict[str, Table] = {t.name: t for t in ALL}


def tables_of(projection: str) -> tuple[Table, ...]:
    return tuple(BY_NAME[name] for name in catalog.projections()[projection])
