"""Where a ledger's rows are, by its URL: the tables and columns every reader of the store
names, and how a SQLite file is opened. Apart from `ledger.store` (the mapper, the event
models) so that a query that only reads (`ledger.readonly`) loads neither."""

from __future__ import annotations

import os
from urllib.parse import quote, unquote, urlsplit

APP_NAME = "m22bol"


def events_table(url: str) -> str:
    return "stored_events" if url.startswith("sqlite") else f"{APP_NAME}_events"


def snapshots_table(url: str) -> str:
    """The library's snapshot table (`ledger.trial_snapshots` keeps the trial's there)."""
    return "stored_snapshots" if url.startswith("sqlite") else f"{APP_NAME}_snapshots"


def log_position(url: str) -> str:
    """The column holding an event's place in the notification log."""
    return "rowid" if url.startswith("sqlite") else "notification_id"


def read_only(path: str) -> bool:
    """A ledger file this process cannot write: its mode, or a read-only file system."""
    return os.path.isfile(path) and (
        not os.access(path, os.W_OK) or bool(os.statvfs(path).f_flag & os.ST_RDONLY))


def sqlite_name(path: str) -> str:
    """What SQLite opens: the path, or for a read-only file a read-only URI, so that every
    query still works (an entry then fails to write, exit 7). Where not even the WAL's shared
    memory file can be made (a read-only folder) and no WAL is pending, the file is opened as
    immutable: nothing can change it from here."""
    if not read_only(path):
        return path
    folder = os.path.dirname(os.path.abspath(path))
    frozen = not os.access(folder, os.W_OK) or bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    pending = os.path.exists(path + "-wal") and os.path.getsize(path + "-wal") > 0
    flags = "mode=ro&immutable=1" if frozen and not pending else "mode=ro"
    return f"file:{quote(os.path.abspath(path))}?{flags}"


def postgres_params(url: str) -> dict[str, str | None]:
    """psycopg's connection arguments for a PostgreSQL ledger URL (the same parts the event
    store's settings take, `ledger.store.store_env`)."""
    parts = urlsplit(url)
    return {"host": parts.hostname or "localhost", "port": str(parts.port or 5432),
            "user": unquote(parts.username or ""),
            "password": unquote(parts.password or "") or None,
            "dbname": parts.path.lstrip("/") or "postgres"}
