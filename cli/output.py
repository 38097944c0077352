"""Printing: human-readable text by default, one JSON document with --json; errors and exit
codes as spec/cli.md says."""

from __future__ import annotations

import re
import sys
from typing import Any

import click

from m22bol.domain.errors import LedgerError


def to_json(document: Any) -> str:
    """The answer's JSON text (`m22bol.projections.document_json`): the form the read models
    store, indented; for printing only, never the canonical form that is hashed."""
    from m22bol.projections.document_json import to_json as document_json

    return document_json(document, indent=True)


# What a terminal would act on rather than show (escape sequences, bells, bidi overrides);
# newlines and tabs lay the text out and stay.
_RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(text: str) -> str:
    """The text with every control character shown as an escape (a value stored before the
    input rules, or quoted back in an error message), never sent raw to the terminal."""
    return _RAW.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def emit(document: Any, as_json: bool, text: str | None = None) -> None:
    """Print the result: the JSON document, or the text (default: key: value lines)."""
    if as_json:
        click.echo(to_json(document))
    else:
        click.echo(printable(text if text is not None else key_values(document)))


def key_values(document: dict[str, Any]) -> str:
    lines = []
    for key, value in document.items():
        if value is None or value == [] or value == {}:
            continue
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{key}:")
            lines.extend("  - " + ", ".join(f"{k}={v}" for k, v in item.items())
                         for item in value)
        elif isinstance(value, list):
            lines.append(f"{key}: " + "; ".join(str(v) for v in value))
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


def table(rows: list[dict[str, Any]], headers: list[str] | None = None) -> str:
    from tabulate import tabulate  # only the human-readable path pays for it

    if not rows:
        return "(none)"
    headers = headers or list(rows[0])
    return tabulate([[r.get(h) for h in headers] for r in rows], headers=headers,
                    tablefmt="simple", missingval="-")


def fail(error: LedgerError, as_json: bool) -> None:
    """Report a refusal and exit with its code; nothing was written."""
    if as_json:
        click.echo(to_json(error.as_json()))
    else:
        rule = f" [{error.rule}]" if error.rule else ""
        click.echo(printable(f"error: {error.message}{rule}"), err=True)
    sys.exit(error.exit_code)
