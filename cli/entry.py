"""Entry commands, generated from the command models in `domain.commands`, so the CLI and the
JSON Lines import can never disagree about names, types or ranges."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import tempfile
import types
import typing
from collections.abc import Iterator
from datetime import date
from typing import Any

import click
from pydantic.fields import FieldInfo

from m22bol.cli.completion import complete_ae, complete_subject
from m22bol.cli.main import Session, cli, handled, shared_options
from m22bol.cli.output import emit, progress
from m22bol.domain import commands as c
from m22bol.domain.errors import BadInput


def _is_bool(annotation: Any) -> bool:
    return annotation is bool or (
        typing.get_origin(annotation) in (typing.Union, types.UnionType)
        and bool in typing.get_args(annotation)
    )


def _is_many(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_many(a) for a in typing.get_args(annotation) if a is not type(None))
    return typing.get_origin(annotation) in (tuple, list, dict)


def _choices(annotation: Any) -> list[str] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is typing.Literal:
            return [str(a) for a in typing.get_args(arg)]
        if _is_many(arg) and (inner := _choices(typing.get_args(arg)[0])):
            return inner
    return None


def _base(annotation: Any) -> Any:
    """The value's type under Optional[...] and Annotated[...]."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _base(args[0])
    if typing.get_origin(annotation) is typing.Annotated:
        return _base(args[0])
    return annotation


def _range(field: FieldInfo) -> str:
    low = high = None
    for m in field.metadata:
        low = next((f"{v}" if k == "ge" else f"more than {v}"
                    for k in ("ge", "gt") if (v := getattr(m, k, None)) is not None), low)
        high = next((f"{v}" for k in ("le", "lt") if (v := getattr(m, k, None)) is not None),
                    high)
    if low is not None and high is not None:
        return f"from {low} to {high}" if not low.startswith("more") else f"{low}, up to {high}"
    return ""


def _format(field: FieldInfo) -> str:
    """Type, range or allowed values, read from the field itself: never out of date."""
    annotation = field.annotation
    if choices := _choices(annotation):
        return "one of " + ", ".join(choices)
    base = _base(annotation)
    if base is date:
        return "as YYYY-MM-DD"
    if base is bool and field.is_required():
        return "yes or no"
    if base is bool:
        return ""
    if base is int:
        return " ".join(filter(None, ["whole number", _range(field)]))
    if base is float:
        return " ".join(filter(None, ["number", _range(field)]))
    if base is str and field.description is None:
        return "text"
    return ""


def option_help(field: FieldInfo) -> str:
    """One line of help for one field, shared by `--help` and docs/cli.md."""
    parts = [field.description or "", _format(field)]
    if _is_many(field.annotation) and _base(field.annotation) is not dict:
        parts.append("repeat for more than one")
    elif typing.get_origin(_base(field.annotation)) is dict:
        parts.append("repeatable")
    if not field.is_required() and field.default not in (None, (), False):
        parts.append(f"default {field.default}")
    text = "; ".join(p for p in parts if p)
    return text[:1].upper() + text[1:] + "." if text else ""


def _metavar(field: FieldInfo) -> str | None:
    if choices := _choices(field.annotation):
        shown = "[" + "|".join(choices) + "]"
        # A long list is spelt out in the help; the usage line names the kind of value.
        return shown if len(shown) <= 30 else field.alias or "CHOICE"
    base = _base(field.annotation)
    return {date: "YYYY-MM-DD", int: "N", float: "NUMBER"}.get(base)


def _offer(field: FieldInfo):
    """Completion of a field's allowed values; the model, not click, checks them."""
    choices = _choices(field.annotation)
    if not choices:
        return None
    return lambda ctx, param, prefix: [c for c in choices if c.startswith(prefix)]


_COMPLETE = {"subject": complete_subject, "ae_id": complete_ae}


def _params(model: type[c.Command]) -> list[click.Parameter]:
    params: list[click.Parameter] = []
    for name in model.positional:
        params.append(click.Argument([name], required=True,
                                     shell_complete=_COMPLETE.get(name)))
    for name, field in model.model_fields.items():
        if name in model.positional:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = option_help(field)
        extra: dict[str, Any] = {"help": help_text, "metavar": _metavar(field),
                                 "shell_complete": _COMPLETE.get(name) or _offer(field)}
        if _is_bool(field.annotation) and not field.is_required() and field.default is None:
            params.append(click.Option([f"{flag}/--not-{name.replace('_', '-')}", name],
                                       default=None, help=help_text))
        elif field.annotation is bool and field.is_required():
            params.append(click.Option([flag, name], required=True,
                                       type=click.Choice(["yes", "no"], case_sensitive=False),
                                       help=help_text))
        elif field.annotation is bool:
            params.append(click.Option([flag, name], is_flag=True, default=False,
                                       help=help_text))
        elif _is_many(field.annotation):
            # A value-taking option that may also stand alone (`--serious`), as it once did.
            alone = (field.json_schema_extra or {}).get("flag_value")
            if alone:
                extra.update(is_flag=False, flag_value=alone)
            params.append(click.Option([flag, name], multiple=True,
                                       required=field.is_required(), **extra))
        else:
            params.append(click.Option([flag, name], required=field.is_required(), **extra))
    return params


def example_argv(model: type[c.Command]) -> list[str]:
    """The command's example as command-line words (positionals first, then options)."""
    values = model.example
    words = [model.name, *(str(values[n]) for n in model.positional if n in values)]
    for name, value in values.items():
        if name in model.positional:
            continue
        flag = "--" + name.replace("_", "-")
        field = model.model_fields[name]
        if value is True and _is_bool(field.annotation) and not field.is_required():
            words.append(flag)
        elif isinstance(value, list):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, str(value)]
    return words


def example_jsonl(model: type[c.Command]) -> str:
    return json.dumps({"command": model.name, **model.example})


def example_line(model: type[c.Command]) -> str:
    return "m22bol " + " ".join(_quote(w) for w in example_argv(model))


def _quote(word: str) -> str:
    # "$USER" stays expandable by the shell; anything else with a space or quote is quoted.
    return shlex.quote(word) if word != "$USER" else '"$USER"'


def _values(model: type[c.Command], given: dict[str, Any]) -> dict[str, Any]:
    """Drop what was not given, so the model's own defaults apply."""
    return {k: v for k, v in given.items() if v is not None and v != ()
            and not (v is False and model.model_fields[k].annotation is bool)}


def _entry_command(model: type[c.Command]) -> click.Command:
    @handled
    def run(s: Session, **given: Any) -> None:
        command = c.parse_command(model.name, _values(model, given))
        if isinstance(command, c.Init):
            output = s.ledger.execute_all(s.first_commands([command]), s.user)[0]
        else:
            output = s.ledger.execute(command, s.user)
        emit(output, s.as_json)

    help_text = model.help or model.__doc__ or ""
    help_text += f"\n\nExample:\n\n\b\n  {example_line(model)}"
    command = click.Command(model.name, callback=run, params=_params(model), help=help_text)
    return shared_options(command)


def build_command(name: str) -> None:
    """Put the entry command `name` on the group, built from its model when it is first asked
    for (`cli.main.LazyGroup`): building every entry command's options and help on each run
    cost about 14 ms of an entry's start-up, for the one command it runs."""
    if name in c.COMMANDS and name not in cli.commands:
        cli.add_command(_entry_command(c.COMMANDS[name]))


@cli.command("import")
@click.argument("file")
@shared_options
@handled
def import_(s: Session, file: str) -> None:
    """Apply JSON Lines records as one transaction: every line or none.

    Each line is {"command": NAME, ...} with the options of that entry command; an error
    names the line number.
    """
    # Only the JSON output lists the entry ids; the text keeps nothing of a line's output.
    keep = (lambda output: output.get("entry")) if s.as_json else (lambda output: None)
    with JsonLines(file) as commands:
        try:
            with progress(len(commands), "importing", s.as_json) as bar:
                entries = s.ledger.execute_all(commands, s.user, progress=bar.update,
                                               keep=keep)
        except Exception:
            # Nothing was written. A bad line anywhere is what the person hears about first,
            # as if every line had been checked before any was applied.
            commands.raise_bad_line()
            raise
    emit({"imported": len(entries), "entries": entries}, s.as_json,
         text=f"imported {len(entries)} records")


class JsonLines:
    """The records of a JSON Lines file, parsed one at a time as the ledger applies them (again
    on a retry), so that memory does not grow with the file and each line is parsed once.

    Opening counts the records (for the progress bar) without parsing them. A bad line is
    reported before anything a rule or the ledger finds: when applying fails at a line (or a
    line fails to parse), `raise_bad_line` parses the lines after the last one parsed and
    raises the first bad one's error, so the outcome is the same as checking every line first
    (the import is one transaction: nothing of it was written). Standard input (`-`) is copied
    to a temporary file first, since it can be read only once."""

    def __init__(self, file: str):
        self.file = file
        try:
            if file == "-":
                self._handle = tempfile.TemporaryFile()
                shutil.copyfileobj(sys.stdin.buffer, self._handle)
            else:
                self._handle = open(file, "rb")  # noqa: SIM115 (closed by __exit__)
            self._handle.seek(0)
            self.count = sum(1 for line in self._handle if line.strip())
        except (OSError, ValueError) as exc:
            self.__exit__()
            raise BadInput(f"file: cannot read {file!r}: {exc}", field="file") from None
        if not self.count:
            self._handle.close()
            raise BadInput("file: no records", field="file")
        self._parsed = 0  # the number of the last line the current pass parsed without fault

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if hasattr(self, "_handle"):
            self._handle.close()

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[c.Command]:
        self._handle.seek(0)
        self._parsed = 0
        for number, line in enumerate(self._handle, start=1):
            if line.strip():
                command = parse_line(number, line.removesuffix(b"\n"))
                self._parsed = number
                yield command
            else:
                self._parsed = number

    def raise_bad_line(self) -> None:
        """Raise the error of the first bad line after the last one parsed, if there is one."""
        self._handle.seek(0)
        for number, line in enumerate(self._handle, start=1):
            if number > self._parsed and line.strip():
                parse_line(number, line.removesuffix(b"\n"))


def parse_line(number: int, raw: bytes) -> c.Command:
    """One record; a bad one is refused with its line number."""
    where = f"line {number}: "
    try:
        record = c.strict_json(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInput(f"{where}not UTF-8 text", field="line") from None
    except c.DuplicateKey as exc:
        raise BadInput(f"{where}{exc}", field=exc.key) from None
    except ValueError as exc:  # also: an integer of more digits than Python converts
        raise BadInput(f"{where}not a JSON object: {exc}", field="line") from None
    if not isinstance(record, dict):
        raise BadInput(f"{where}not a JSON object", field="line")
    name = record.pop("command", None)
    if not isinstance(name, str):
        raise BadInput(f"{where}command: expected the command's name as text, got "
                       f"{type(name).__name__}", field="command")
    if name == "import":
        raise BadInput(f"{where}command: import cannot be nested", field="command")
    return c.parse_command(name, record, where=where)
