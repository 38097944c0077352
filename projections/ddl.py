"""The read models' DDL, compiled by SQLAlchemy for the database at hand.

Only creating or re-creating tables needs it: once per ledger, after a build that changes a
projection's tables, and in `projections rebuild` or `db setup`. SQLAlchemy knows each
database's types, quoting and index syntax, so the definitions in `projections.tables` stay
plain; the rows themselves are written with plain SQL on the event store's connection
(`projections.recorder`), so an ordinary entry or query never imports SQLAlchemy (about 0.2 s
of start-up).
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable, DropTable

from m22bol.projections import tables

_TYPES: dict[str, type[sa.types.TypeEngine]] = {
    tables.BigInteger: sa.BigInteger, tables.Boolean: sa.Boolean, tables.Date: sa.Date,
    tables.Float: sa.Float, tables.Integer: sa.Integer, tables.Text: sa.Text,
}


def _type(name: str) -> sa.types.TypeEngine:
    if length := re.fullmatch(r"VARCHAR\((\d+)\)", name):
        return sa.String(int(length[1]))
    return _TYPES[name]()


def _schema(table: tables.Table) -> sa.Table:
    return sa.Table(table.name, sa.MetaData(), *(
        sa.Column(c.name, _type(c.type), primary_key=c.primary_key,
                  nullable=c.nullable and not c.primary_key, unique=c.unique or None,
                  index=c.index or None)
        for c in table.columns))


def _dialect(is_sqlite: bool) -> sa.engine.Dialect:
    return sqlite.dialect() if is_sqlite else postgresql.dialect()


def create(table: tables.Table, *, is_sqlite: bool) -> list[str]:
    """CREATE TABLE and its CREATE INDEXes, each only if missing."""
    schema, dialect = _schema(table), _dialect(is_sqlite)
    indexes = sorted(schema.indexes, key=lambda index: index.name or "")
    return [str(CreateTable(schema, if_not_exists=True).compile(dialect=dialect)).strip(),
            *(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect))
              for index in indexes)]


def drop(table: tables.Table, *, is_sqlite: bool) -> str:
    return str(DropTable(_schema(table), if_exists=True).compile(dialect=_dialect(is_sqlite)))
