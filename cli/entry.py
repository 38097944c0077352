"""Entry commands, generated from the command models in `domain.commands`, so the CLI and the
JSON Lines import can never disagree about names, types or ranges."""

from __future__ import annotations

import sys
import types
import typing
from typing import Any

import click

from m22bol.cli.main import Session, cli, handled, shared_options
from m22bol.cli.output import emit
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
    return None


def _params(model: type[c.Command]) -> list[click.Parameter]:
    params: list[click.Parameter] = []
    for name in model.positional:
        params.append(click.Argument([name], required=True))
    for name, field in model.model_fields.items():
        if name in model.positional:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = field.description or ""
        if choices := _choices(field.annotation):
            help_text = (help_text + " " if help_text else "") + "|".join(choices)
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
            extra = {"is_flag": False, "flag_value": alone} if alone else {}
            params.append(click.Option([flag, name], multiple=True, help=help_text
                                       + " (repeatable)", required=field.is_required(), **extra))
        else:
            params.append(click.Option([flag, name], required=field.is_required(),
                                       help=help_text))
    return params


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

    command = click.Command(model.name, callback=run, params=_params(model),
                            help=model.help or model.__doc__)
    return shared_options(command)


for _model in c.COMMANDS.values():
    cli.add_command(_entry_command(_model))


@cli.command("import")
@click.argument("file")
@shared_options
@handled
def import_(s: Session, file: str) -> None:
    """Apply JSON Lines records as one transaction: every line or none.

    Each line is {"command": NAME, ...} with the options of that entry command; an error
    names the line number.
    """
    commands = parse_jsonl(_read(file))
    bar = None
    if sys.stderr.isatty() and len(commands) > 100:
        bar = click.progressbar(length=len(commands), label="importing", file=sys.stderr)
    try:
        outputs = s.ledger.execute_all(commands, s.user, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.render_finish()
    emit({"imported": len(outputs), "entries": [o.get("entry") for o in outputs]}, s.as_json,
         text=f"imported {len(outputs)} records")


def _read(file: str) -> bytes:
    if file == "-":
        return sys.stdin.buffer.read()
    try:
        with open(file, "rb") as handle:
            return handle.read()
    except (OSError, ValueError) as exc:
        raise BadInput(f"file: cannot read {file!r}: {exc}", field="file") from None


def parse_jsonl(data: bytes) -> list[c.Command]:
    """Every record parsed before anything is applied; the first bad line is reported."""
    commands = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        where = f"line {number}: "
        if not raw.strip():
            continue
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
        commands.append(c.parse_command(name, record, where=where))
    if not commands:
        raise BadInput("file: no records", field="file")
    return commands
