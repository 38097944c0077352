"""What today's entry rules say of a stored event's values.

An event is stored once and never rewritten, but the rules for what an entry may hold have
grown (printable text, length caps, finite numbers, bounded lists). A value an older version or
a past bug stored can fail them. The store decodes such an event anyway and marks the values
the event model itself refuses (`Event.stored_problems`, set by `m22bol.ledger.store`); this
module adds what only the entering command's model knows: control characters and text or list
lengths over the command's cap. `audit verify` names every one (docs/audit.md).
"""

from __future__ import annotations

import typing
from functools import cache
from typing import Any

from annotated_types import MaxLen
from pydantic.fields import FieldInfo

from m22bol.domain import commands as c
from m22bol.domain.decide import _COMMAND_OF, _RENAMES
from m22bol.domain.events import Event, Fact


def problems(event: Event) -> list[tuple[str, str]]:
    """(field, why) for each stored value of the event that today's rules refuse."""
    found = list(event.stored_problems)
    if not isinstance(event, Fact):  # the trial's own texts (a protocol file) span lines
        return found
    named = {field for field, _ in found}
    caps = _caps(type(event))
    for name in type(event).model_fields:
        value = getattr(event, name, None)
        if name in named or value is None:
            continue
        if bad := _unprintable(value):
            found.append((name, f"{name}: holds the control or bidirectional character {bad}"))
        elif name in caps and isinstance(value, (str, tuple, list)) and len(value) > caps[name]:
            unit = "characters" if isinstance(value, str) else "items"
            found.append((name, f"{name}: {len(value)} {unit}, over today's limit of "
                                f"{caps[name]}"))
    return found


def _unprintable(value: Any) -> str | None:
    if isinstance(value, str):
        return c.unprintable(value)
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, (tuple, list)):
        items = list(value)
    elif hasattr(value, "model_dump"):  # a lesion
        items = list(value.model_dump().values())
    else:
        return None
    return next((bad for item in items if (bad := _unprintable(item))), None)


@cache
def _caps(fact: type[Fact]) -> dict[str, int]:
    """The length cap of each stored field, from the command model that enters the fact."""
    model = _COMMAND_OF.get(fact)
    if model is None:
        return {}
    caps: dict[str, int] = {}
    for name, info in model.model_fields.items():
        if limits := list(_max_lengths(info)):
            caps[_RENAMES.get(name, name)] = min(limits)
    return caps


def _max_lengths(where: Any) -> typing.Iterator[int]:
    """Every MaxLen in a field's metadata and in the Annotated types of its annotation."""
    if isinstance(where, FieldInfo):
        yield from _max_lengths(where.annotation)
        for meta in where.metadata:
            if isinstance(meta, MaxLen):
                yield meta.max_length
        return
    for arg in typing.get_args(where):
        if isinstance(arg, MaxLen):
            yield arg.max_length
        elif isinstance(arg, FieldInfo):
            yield from (m.max_length for m in arg.metadata if isinstance(m, MaxLen))
        elif typing.get_origin(arg) is typing.Annotated or typing.get_args(arg):
            yield from _max_lengths(arg)
