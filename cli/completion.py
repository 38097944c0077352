"""Shell completion of subject ids and AE ids, read from the ledger the command would use
(`--ledger` or M22BOL_LEDGER given before the word being completed). Set up as docs/completion.md
says."""

from __future__ import annotations

import click

from m22bol.cli.main import session


def complete_subject(ctx: click.Context, param: click.Parameter, prefix: str) -> list[str]:
    return _complete(ctx, prefix, None)


def complete_ae(ctx: click.Context, param: click.Parameter, prefix: str) -> list[str]:
    return _complete(ctx, prefix, ctx.params.get("subject") or "")


def _complete(ctx: click.Context, prefix: str, subject: str | None) -> list[str]:
    """Ids from the ledger for the shell; any failure (no ledger, no role) offers nothing."""
    try:
        with ctx:
            s = session()
            try:
                s.reader.allow("patient")
                from m22bol.projections.stored import completions

                return completions(s.ledger, prefix, subject, s.reader.sites())
            finally:
                if s._ledger is not None:
                    s._ledger.close()
    except Exception:  # completion must never print a traceback into the shell
        return []
