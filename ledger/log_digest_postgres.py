"""The PostgreSQL recorder that also records the log's running digest (`ledger.log_digest`),
apart so that a SQLite ledger never imports psycopg (about 0.4 s)."""

from __future__ import annotations

from eventsourcing.postgres import PostgresApplicationRecorder

from m22bol.ledger.log_digest import create_statement, extend


class PostgresLedgerRecorder(PostgresApplicationRecorder):
    def __init__(self, *args, **kwargs):
        from psycopg.sql import SQL

        super().__init__(*args, **kwargs)
        self.sql_create_statements.append(SQL(create_statement("postgres")))

    def _fetch_ids_after_insert_events(self, curs, stored_events, **kwargs):
        # Runs inside the insert's transaction, after the table lock that orders the log.
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        if ids:
            def execute(sql: str, params: tuple, fetch: bool = True) -> list:
                curs.execute(sql, params)
                if not fetch:
                    return []
                return [tuple(r.values()) if isinstance(r, dict) else tuple(r)
                        for r in curs.fetchall()]

            extend(execute, "postgres", ids, stored_events)
        return ids
