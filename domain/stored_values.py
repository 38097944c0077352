"""What today's entry rules say of a stored event's values.

An event is stored once and never rewritten, but the rules for what an entry may hold have
grown (printable text, length caps, finite numbers, bounded lists). A value an older version or
a past bug stored can fail them. The store decodes such an event anyway and marks the values
the event model itself refuses (`Event.stored_problems`, set by `m22bol.ledger.store`); this
module adds what only the entering command's model knows: control characters and text or list
lengths over the command's cap. `audit verify` names every one (docs/audit.md).
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from typing import Any
from uuid import UUID

from annotated_types import MaxLen
from pydantic.fields import FieldInfo

from m22bol.domain import commands as c
from m22bol.domain.decide import COMMAND_OF, RENAMES
from m22bol.domain.events import Event, Fact, Lesion, size_problem


def suspect(cls: type[Event], state: dict[str, Any], raw: bytes) -> bool:
    """Whether a stored event's values may fail today's rules, judged from its parsed JSON and
    its bytes without building the event (about a tenth of the cost): False means none does;
    True means build it and look (`problems`). It checks the keys, each value's JSON type and
    allowed values, the length caps, each lesion's size, and the bytes for non-finite numbers
    and control or bidirectional characters (escaped or raw, as a JSON writer leaves them)."""
    shape = _shape(cls)
    # Events of one type are stored with the same keys and value types over and over: a
    # signature already checked needs only its choices and length caps looked at again.
    signature = (tuple(state), tuple(map(type, state.values())))
    if signature not in shape.fine and not _fits(cls, shape, state):
        return True
    shape.fine.add(signature)
    for name, allowed, cap in shape.limits:
        value = state.get(name)
        if (allowed is not None and value not in allowed) or (
                cap is not None and value is not None and len(value) > cap):
            return True
    for name in shape.lesions:  # a size outside today's bound (events.size_problem)
        for lesion in state.get(name) or ():
            mm = lesion.get("mm") if isinstance(lesion, dict) else None
            if type(mm) in (int, float) and size_problem(mm):
                return True
    # Plain byte tests first (the pattern below costs ten times more): every character it
    # looks for is escaped (a backslash), DEL, or not ASCII.
    hinted = (b"\\" in raw or not raw.isascii() or b"NaN" in raw or b"Infinity" in raw
              or b"\x7f" in raw)
    return hinted and bool(_SUSPECT_BYTES.search(raw))


def _fits(cls: type[Event], shape: _Shape, state: dict[str, Any]) -> bool:
    """The keys are known, the required ones there, every value of an allowed JSON type."""
    keys = state.keys()
    if not (shape.required <= keys <= shape.known) or (
            state.get("class_version", 1) != cls.class_version):
        return False  # a field missing or no longer known, or old fields an upcast reads
    return all(isinstance(state.get(name), kinds) for name, kinds in shape.kinds)


_SUSPECT_BYTES = re.compile(
    rb"[:\[,]\s*(?:-?Infinity|NaN)\s*[,}\]]"  # Python's JSON writer's non-finite numbers
    rb"|\\[bfnrt]|\\u00[0189][0-9a-fA-F]|\\u007[fF]"  # C0, DEL and C1 as JSON escapes them
    rb"|\\u20(?:2[a-eA-E]|6[6-9])|\\u[dD][89a-fA-F]"  # bidi controls, lone surrogates
    rb"|\x7f|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]")  # the same, raw UTF-8


@dataclass(frozen=True)
class _Shape:
    known: frozenset[str]  # the fields, and what the store adds: the type, the class version
    required: frozenset[str]
    kinds: tuple[tuple[str, tuple[type, ...]], ...]  # each field's allowed JSON types
    # (name, allowed values or None, length cap or None) of each field with either
    limits: tuple[tuple[str, frozenset | None, int | None], ...]
    lesions: tuple[str, ...]  # fields holding measured lesions, each size checked
    fine: set[tuple] = field(default_factory=set)  # (keys, value types) that fit


@cache
def _shape(cls: type[Event]) -> _Shape:
    caps = _caps(cls) if issubclass(cls, Fact) else {}
    kinds, limits = [], []
    for name, info in cls.model_fields.items():
        types_, allowed = _kinds(info.annotation)
        if not info.is_required():  # absent: read as its default
            types_ = (*types_, type(None))
            allowed = None if allowed is None else allowed | {None}
        kinds.append((name, types_))
        if allowed is not None or name in caps:
            limits.append((name, allowed, caps.get(name)))
    return _Shape(known=frozenset({*cls.model_fields, "event_type", "class_version"}),
                  required=frozenset(n for n, i in cls.model_fields.items() if i.is_required()),
                  kinds=tuple(kinds), limits=tuple(limits),
                  lesions=tuple(name for name, info in cls.model_fields.items()
                                if Lesion in typing.get_args(info.annotation)))


def _kinds(annotation: Any) -> tuple[tuple[type, ...], frozenset | None]:
    """The JSON types a field's value may have, and its allowed values when it is a choice
    (None: any value of those types). Anything not named here is left to the full decode."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _kinds(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        values = typing.get_args(annotation)
        return tuple({type(v) for v in values}), frozenset(values)
    if origin in (typing.Union, types.UnionType):
        parts = [_kinds(arg) for arg in typing.get_args(annotation)]
        kinds = tuple({k for found, _ in parts for k in found})
        choices = [allowed for found, allowed in parts if found != (type(None),)]
        if all(allowed is not None for allowed in choices):
            return kinds, frozenset().union(*choices, {None})
        return kinds, None
    simple = {type(None): (type(None),), bool: (bool,), int: (int,), float: (int, float),
              str: (str,), date: (str,), datetime: (str,), UUID: (str,)}
    if annotation in simple:
        return simple[annotation], None
    if origin in (tuple, list) or annotation in (tuple, list):
        return (list,), None
    if origin is dict or annotation is dict:
        return (dict,), None
    return (object,), None


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
    model = COMMAND_OF.get(fact)
    if model is None:
        return {}
    caps: dict[str, int] = {}
    for name, info in model.model_fields.items():
        if limits := list(_max_lengths(info)):
            caps[RENAMES.get(name, name)] = min(limits)
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
