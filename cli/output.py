"""Printing: human-readable text by default, one JSON document with --json; errors and exit
codes as docs/output.md says. Progress bars go to standard error, on a terminal only."""

from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap
from collections.abc import Iterable
from contextlib import contextmanager
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


def width() -> int | None:
    """The terminal's width, or $COLUMNS; None when piped without it: a line that goes to a
    file or to grep stays whole, as with `ls`."""
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        return None
    return max(60, shutil.get_terminal_size((100, 24)).columns)


def table(rows: list[dict[str, Any]], headers: list[str] | None = None,
          wrap: dict[str, int] | None = None) -> str:
    """Text left-aligned, numbers right-aligned on their decimal point; `wrap` gives columns
    that are folded to fit the terminal, each with its share of the room left over."""
    from tabulate import tabulate  # only the human-readable path pays for it

    if not rows:
        return "(none)"
    headers = headers or list(rows[0])
    cells = [[r.get(h) for h in headers] for r in rows]
    widths = None
    if wrap and (room := width()):
        # tabulate pads a header by 2 (its MIN_PADDING): the header may set the width.
        natural = [max(len(str(h)) + 2, *(len(str(c[i])) for c in cells))
                   for i, h in enumerate(headers)]
        room -= sum(n + 2 for n, h in zip(natural, headers, strict=True) if h not in wrap)
        # A folded column that fits its share keeps its natural width; the others share what
        # is left by their weights.
        share = {h: w for h, w in wrap.items() if h in headers}
        fits = {h for h in share
                if natural[headers.index(h)] + 2 <= room * share[h] / sum(share.values())}
        room -= sum(natural[headers.index(h)] + 2 for h in fits)
        rest = sum(w for h, w in share.items() if h not in fits) or 1
        widths = [None if h not in share
                  else natural[i] if h in fits
                  else max(10, room * share[h] // rest - 2)
                  for i, h in enumerate(headers)]
    # preserve_whitespace keeps the padding align_numbers put in front of a number.
    # Text is printed as given: tabulate would otherwise read "1.50" as a number and print
    # "1.5"; real numbers are still aligned on their decimal point.
    text_columns = [i for i in range(len(headers)) if any(isinstance(c[i], str) for c in cells)]
    return tabulate(cells, headers=headers, tablefmt="simple", missingval="-",
                    stralign="left", numalign="decimal", maxcolwidths=widths,
                    preserve_whitespace=True, disable_numparse=text_columns)


_LEADING_NUMBER = re.compile(r"^[\d./]+")


def align_numbers(cells: list[Any]) -> list[Any]:
    """Cells of one column that open with a number (`1/3 (33.3%, ...)`, `12`) are padded on
    the left so those numbers end in one place, as in a printed table: counts line up under
    each other whatever follows them. Other cells (`not reached`, `-`) stay as they are."""
    lead = [m.end() if isinstance(c, str) and (m := _LEADING_NUMBER.match(c)) else None
            for c in cells]
    widest = max((n for n in lead if n is not None), default=0)
    return [" " * (widest - n) + c if n is not None else c
            for c, n in zip(cells, lead, strict=True)]


def fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """`label  value` lines with the values aligned; empty values are left out."""
    shown = [(k, v) for k, v in pairs if v not in (None, "", [], {})]
    if not shown:
        return "  (none)"
    pad = max(len(k) for k, _ in shown) + 2
    return "\n".join(fill(str(v), f"  {k:<{pad}}", " " * (pad + 2)) for k, v in shown)


def fill(text: str, first: str = "", rest: str = "") -> str:
    """Text folded to the terminal (whole when piped), after the given indents."""
    return textwrap.fill(text, width() or 10**6, initial_indent=first, subsequent_indent=rest)


def section(title: str, body: str) -> str:
    return f"{title}\n{body}"


class _Silent:
    """Stands in for the bar where none is shown, so callers never ask whether there is one."""

    label = ""
    pos = 0

    def update(self, steps: int) -> None:
        self.pos += steps


@contextmanager
def progress(length: int, label: str, as_json: bool = False):
    """A progress bar on standard error while a long command works: never in --json output,
    never when standard error is not a terminal (a pipe, a file, a test)."""
    if as_json or not sys.stderr.isatty():
        yield _Silent()
        return
    with click.progressbar(length=length, label=label, file=sys.stderr,
                           show_pos=True) as bar:
        yield bar


def fail(error: LedgerError, as_json: bool) -> None:
    """Report a refusal and exit with its code; nothing was written."""
    if as_json:
        click.echo(to_json(error.as_json()))
    else:
        rule = f" [{error.rule}]" if error.rule else ""
        click.echo(printable(f"error: {error.message}{rule}"), err=True)
    sys.exit(error.exit_code)


@contextmanager
def reading_log(ledger, label: str, as_json: bool = False):
    """A bar over the notification log while a command reads it whole (verify, export): the
    ledger pages through `select_notifications`, so counting the pages it fetches measures
    the work without the ledger knowing about terminals."""
    if as_json or not sys.stderr.isatty():
        yield
        return
    recorder = ledger.recorder
    fetch = recorder.select_notifications
    with progress(recorder.max_notification_id() or 0, label, as_json) as bar:
        def counted(*args, **kwargs):
            page = fetch(*args, **kwargs)
            bar.update(len(page))
            return page

        recorder.select_notifications = counted
        try:
            yield
        finally:
            del recorder.select_notifications  # the class's own method again
