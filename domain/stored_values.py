"""What today's entry rules say of a stored event's values.

An event is stored once and never rewritten, but the rules for what an entry may hold have
grown (printable text, length caps, finite numbers, bounded lists). A value an older version or
a past bug stored can fail them. The store decodes such an event anyway and marks the values
the event model itself refuses (`Event.stored_problems`, set by `m22bol.ledger.store`); this
module adds what only the entering command's model knows: control characters and text or list
lengths over the command's cap. `audit verify` names every one (docs/audit.md), and reads
most events' bytes only through `plainly_fine`, a byte pattern that passes no value these
checks would refuse.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from datetime import date, datetime
from functools import cache
from typing import Any
from uuid import UUID

import orjson
from annotated_types import MaxLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from m22bol.domain import commands as c
from m22bol.domain.decide import COMMAND_OF, RENAMES
from m22bol.domain.events import SIZE_BOUND, Event, Fact, topic_of


def plainly_fine(cls: type[Event], *, compile_after: int = 100) -> Callable[[bytes], bool] | None:
    """A test of an event's stored bytes, without parsing them, that passes only bytes whose
    every value today's rules accept (`problems` would find nothing): a match of one byte
    pattern per event type, at about the cost of parsing. None when the type's fields are
    beyond what the pattern can describe. Bytes that fail it may still be fine: they are
    parsed and checked in full."""
    plain = _template(cls, plain=True)
    if plain is None:
        return None
    plain_match = plain.fullmatch
    full_match, others = None, 0

    def fine(raw: bytes) -> bool:
        # Nearly every event is plain ASCII with nothing escaped, which a simpler and faster
        # pattern describes. The other pattern takes 5-10 ms to compile, the full check of an
        # event about 50 us: the first `compile_after` others of a type get the full check.
        nonlocal full_match, others
        if raw.isascii() and b"\\" not in raw:
            return plain_match(raw) is not None
        if full_match is None:
            others += 1
            if others <= compile_after:
                return False
            full_match = _template(cls, plain=False).fullmatch
        return full_match(raw) is not None

    return fine


# Why a pattern match can stand in for the check. Strings hold no control, bidirectional or
# surrogate character and no escape but \" \\ \/, so a string can only end at a quote its own
# pattern ends at: the bytes split into JSON tokens one way only, the way every JSON reader splits
# them. Around the strings the pattern follows JSON's grammar, with the keys the canonical writer
# writes (each field once, sorted, no white space), so a match is the parse. Each field's value
# pattern then admits only values its type accepts: finite numbers (at most 18 digits before
# the point and an exponent up to 289, so below 1e307), real calendar dates, a choice's own
# values, at most the command's cap of characters or items. tests/unit/test_stored_values_filter.py
# generates good and bad bytes of every kind and checks that none the check refuses matches.
_ASCII = rb'[ !#-\[\]-~]'  # printable ASCII but the quote and the backslash
_ESCAPED = rb'\\["\\/]'
_UTF8 = (  # one whole UTF-8 character above ASCII, none of the C1 controls, bidi or surrogates
    rb'\xc2[\xa0-\xbf]|[\xc3-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]'
    rb'|\xe2(?:\x80[\x80-\xa9\xaf-\xbf]|\x81[\x80-\xa5\xaa-\xbf]|[\x82-\xbf][\x80-\xbf])'
    rb'|[\xe1\xe3-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]'
    rb'|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}')
_INT = rb'-?(?:0|[1-9][0-9]{0,17})'
# (each value is matched atomically: of two alternatives the longer must come first)
_NUMBER = _INT + rb'(?:\.[0-9]+)?(?:[eE](?:-[0-9]{1,3}|\+?(?:2[0-8][0-9]|1[0-9]{2}|[0-9]{1,2})))?'
_DATE = (rb'[1-9][0-9]{3}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])'  # 29 February: parsed
         rb'|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)')
_CLOCK = rb'(?:[01][0-9]|2[0-3]):[0-5][0-9]'
_DATETIME = rb'%sT%s:[0-5][0-9](?:\.[0-9]{1,6})?(?:Z|[+-]%s)' % (_DATE, _CLOCK, _CLOCK)
_UUID = rb'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
_SCALARS = {type(None): rb'null', bool: rb'true|false', int: _INT, float: _NUMBER,
            date: rb'"%s"' % _DATE, datetime: rb'"%s"' % _DATETIME, UUID: rb'"%s"' % _UUID}
# A lesion's size as events.size_problem takes it: 0, or from 0.1 to 1000 mm, no exponent.
_SIZE = rb'1000(?:\.0+)?|[1-9][0-9]{0,2}(?:\.[0-9]+)?|0\.[1-9][0-9]*|0(?:\.0+)?'
_DEPTH = 3  # of a free-form JSON value (a scan's response, a correction's changes)


def _text(plain: bool, cap: int | None = None) -> bytes:
    if plain:
        return rb'"%s*+"' % _ASCII if cap is None else rb'"%s{0,%d}+"' % (_ASCII, cap)
    char = rb'%s|%s|%s' % (_ASCII, _ESCAPED, _UTF8)
    return rb'"(?:%s)*+"' % char if cap is None else rb'"(?:%s){0,%d}+"' % (char, cap)


def _items(item: bytes, cap: int | None) -> bytes:
    if cap == 0:
        return rb'\[\]'
    more = b"*+" if cap is None else b"{0,%d}+" % (cap - 1)
    return rb'\[(?:(?:%s)(?:,(?:%s))%s)?\]' % (item, item, more)


def _json(plain: bool, depth: int) -> bytes:
    """Any JSON value nested at most `depth` deep, with finite numbers and plain text."""
    text = _text(plain)
    scalar = b"|".join([text, _NUMBER, rb"true|false|null"])
    if depth == 0:
        return scalar
    inner = _json(plain, depth - 1)
    return rb'%s|%s|%s' % (scalar, _members(text, inner), _items(inner, None))


def _members(text: bytes, value: bytes) -> bytes:
    return rb'\{(?:%s:(?:%s)(?:,%s:(?:%s))*)?\}' % (text, value, text, value)


def _value(annotation: Any, plain: bool, cap: int | None = None) -> bytes | None:
    """The bytes pattern of every stored value of this type that today's rules accept, or None
    when the type is beyond this description (its events are parsed)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return _json(plain, _DEPTH)
    if origin is typing.Literal:
        if not all(isinstance(v, str) and v.isascii() and v.isprintable() for v in args):
            return None
        return b"|".join(re.escape(orjson.dumps(v)) for v in sorted(args, key=len, reverse=True))
    if origin in (typing.Union, types.UnionType):
        arms = [_value(arg, plain, cap) for arg in args]
        return None if None in arms else b"|".join(arms)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if annotation is str:
        return _text(plain, cap)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis or origin is list:
        item = _value(args[0], plain)
        return None if item is None else _items(item, cap)
    if origin is tuple and Ellipsis not in args:
        items = [_value(arg, plain) for arg in args]
        return None if None in items else rb'\[%s\]' % b",".join(b"(?:%s)" % i for i in items)
    if origin is dict and args[0] is str and args[1] is Any:
        return _members(_text(plain), _json(plain, _DEPTH - 1))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _object(annotation, plain, {}, {})
    return None


def _object(model: type[BaseModel], plain: bool, caps: dict[str, int],
            extra: dict[str, bytes]) -> bytes | None:
    """A model's JSON object as the canonical writer writes it: every field, keys sorted."""
    fields = dict(extra)
    for name, info in model.model_fields.items():
        if info.metadata == [SIZE_BOUND]:
            pattern = rb'null|' + _SIZE
        elif info.metadata:  # other constraints of the model's own: parsed
            return None
        else:
            pattern = _value(info.annotation, plain, caps.get(name))
        if pattern is None:
            return None
        fields[name] = pattern
    return rb'\{%s\}' % b",".join(b'"%s":(?>%s)' % (name.encode(), fields[name])
                                   for name in sorted(fields))


@cache
def _template(cls: type[Event], *, plain: bool) -> re.Pattern[bytes] | None:
    """`plain`: for bytes that are ASCII and hold no backslash."""
    extra = {"event_type": re.escape(orjson.dumps(topic_of(cls)))}
    if cls.class_version > 1:
        extra["class_version"] = b"%d" % cls.class_version
    body = _object(cls, plain, _caps(cls) if issubclass(cls, Fact) else {}, extra)
    return None if body is None else re.compile(body)


def problems(event: Event) -> list[tuple[str, str]]:
    """(field, why) for each stored value of the event that today's rules refuse. What the
    store found as it decoded comes first: a value the model refused, and any non-finite
    number (NaN, Infinity, 1e999), which a float field would accept."""
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
