"""`audit verify` reads most events only through a byte pattern (`stored_values.plainly_fine`)
and checks in full only the events it does not pass. The pattern is sound if it passes no
bytes in which the full check (decode as the store does, then `stored_values.problems`) finds a
value today's rules refuse; and worth having if it passes what the ledger writes.

Soundness is shown on generated events of every type: a valid event, then one value replaced
by a bad one anywhere in it (top level or nested), a key dropped or added, or a raw JSON token
spliced in (escapes such as \\u0000, \\u202e and lone surrogates, 1e999, NaN, huge integers,
impossible dates, raw C1 and bidi bytes, broken UTF-8), written by the canonical writer or by
Python's JSON writer (which escapes all non-ASCII and writes bare NaN) with or without spaces.
"""

from __future__ import annotations

import json
import types
import typing
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import orjson
from eventsourcing.persistence import StoredEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from m22bol.domain import commands as c
from m22bol.domain import stored_values
from m22bol.domain.events import Event, Fact, ScanRecorded, event_types, topic_of
from m22bol.ledger.store import CanonicalTranscoder, PydanticMapper, stored_bytes

CLASSES = sorted(event_types().values(), key=lambda cls: cls.__name__)
MAPPER = PydanticMapper(transcoder=CanonicalTranscoder())

# Text as people type it (a valid event holds it), and text with anything at all in it
# (controls, bidi, surrogates), which the changes below bring in.
PLAIN = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
LETTERS = st.characters(categories=["L", "N", "P", "S", "Zs"])
GOOD_TEXT = st.one_of(st.text(PLAIN, max_size=12), st.text(LETTERS, max_size=6))
ANY_CHAR = st.characters(codec=None, exclude_categories=())
NASTY = st.sampled_from(["\x00", "\x1f", "\t", "\n", "\x7f", "\x85", "\x9f", "\u202a", "\u202e",
                         "\u2066", "\u2069", "\ud800", "\udfff", '"', "\\", "/", "\u00e9",
                         "\u2028", "\ufeff", "\U0001f600", "\u200f"])
TEXT = st.one_of(GOOD_TEXT, st.text(ANY_CHAR, max_size=6),
                 st.lists(st.one_of(PLAIN, NASTY), max_size=6).map("".join))

# JSON fragments no Python value encodes to, spliced in where a value was (`RAW` marks it).
RAW_TOKENS = [
    b"1e999", b"-1E400", b"1e308", b"1.8e308", b"9" * 400, b"0.1e-999", b"1e99", b"NaN",
    b"-Infinity", b"Infinity", b"123456789012345678901234567890", b"-0", b"1.0", b"2.5",
    b'"\\u0000"', b'"\\u001F"', b'"\\u007f"', b'"\\u0085"', b'"\\u202E"', b'"\\u2066"',
    b'"\\ud800"', b'"\\uDFFF"', b'"\\ud83d\\ude00"', b'"a\\nb"', b'"\\t"', b'"\\b"', b'"\\/"',
    b'"\\""', b'"\\\\u0000"', b'"\\u0041"', b'"\xc2\x85"', b'"\xe2\x80\xae"', b'"\xe2\x81\xa6"',
    b'"\xed\xa0\x80"', b'"\x7f"', b'"\x01"', b'"\xff"', b'"\xc3"', b'"\xf4\x90\x80\x80"',
    b'"2025-02-30"', b'"2024-02-29"', b'"2023-02-29"', b'"2025-13-01"', b'"0000-01-01"',
    b'"2025-1-1"', b'"\xef\xbc\x92\xef\xbc\x90\xef\xbc\x92\xef\xbc\x95-01-01"',
    b'"2025-01-01T25:00:00Z"', b"true", b"null", b"[]", b"{}", b'"x"', b'[1e999]',
    b'{"a":NaN}', b'["\\u0000"]', b'{"\\u202e":1}', b' "x" ',
]
RAW = "@raw:{}@"


class Raw(str):
    """A placeholder value, replaced by RAW_TOKENS[i] after encoding."""


class Number(str):
    """A number written as its text says (an exponent, many digits), spliced in as a token."""


# Numbers near and beyond the edge of a double: long mantissas and 1- to 4-digit exponents.
NUMBER_TEXT = st.builds("{}{}{}{}".format, st.sampled_from(["", "-"]),
                        st.one_of(st.integers(0, 10**20), st.integers(10**300, 10**320)),
                        st.sampled_from(["", ".5", ".000001"]),
                        st.one_of(st.just(""), st.integers(-1100, 1100).map("e{}".format),
                                  st.integers(0, 400).map("E+{}".format)))


def json_values(text=TEXT) -> st.SearchStrategy:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), text)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(text, inner, max_size=3), max_leaves=6)


BAD = st.one_of(json_values(),
                st.integers(0, len(RAW_TOKENS) - 1).map(lambda i: Raw(RAW.format(i))))


def texts(cap: int | None) -> st.SearchStrategy:
    if cap is None:
        return GOOD_TEXT
    around = st.integers(max(cap - 1, 0), cap + 1)
    return st.one_of(GOOD_TEXT, st.tuples(around, st.sampled_from("a\u00e9\U0001f600\\\"")).map(
        lambda n_char: "a" * (n_char[0] - 1) + n_char[1] if n_char[0] else ""))


def values(annotation: Any, cap: int | None = None) -> st.SearchStrategy:
    """Values of a field's type as JSON holds them, valid but for what the text may hold."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return json_values(GOOD_TEXT)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([values(arg, cap) for arg in args])
    if annotation is type(None):
        return st.none()
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(-(10**6), 10**6)
    if annotation is float:
        return st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                         st.integers(-(10**6), 10**6))
    if annotation is str:
        return texts(cap)
    if annotation is date:
        return st.dates(min_value=date(1000, 1, 1)).map(date.isoformat)
    if annotation is datetime:
        return st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.just(UTC)).map(
            lambda moment: moment.isoformat().replace("+00:00", "Z"))
    if annotation is UUID:
        return st.uuids().map(str)
    if origin is tuple and args[-1] is Ellipsis or origin is list:
        item = values(args[0])
        if cap is None:
            return st.lists(item, max_size=3)
        # Lists near their cap: one item repeated, so that a long list is cheap to draw.
        return st.one_of(st.lists(item, max_size=3), st.tuples(
            item, st.integers(max(cap - 1, 0), cap + 1)).map(lambda pair: [pair[0]] * pair[1]))
    if origin is tuple:
        return st.tuples(*[values(arg) for arg in args]).map(list)
    if origin is dict:
        return st.dictionaries(GOOD_TEXT, json_values(GOOD_TEXT), max_size=3)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return st.fixed_dictionaries({name: values(info.annotation)
                                      for name, info in annotation.model_fields.items()})
    raise AssertionError(f"no strategy for {annotation!r}")


def near(annotation: Any) -> st.SearchStrategy:
    """Values at the edge of a field's type: numbers that overflow or are not whole, dates
    that do not exist, codes that are not among the choices."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([near(arg) for arg in args if arg is not type(None)])
    if origin is typing.Literal:
        return st.one_of(st.sampled_from(args).map(str.upper), st.sampled_from(args).map(
            lambda code: code + " "), GOOD_TEXT)
    if annotation in (int, float):
        return st.one_of(NUMBER_TEXT.map(Number), st.floats(), st.integers(), st.booleans())
    if annotation in (date, datetime):
        return st.tuples(st.integers(0, 10_000), st.integers(0, 13), st.integers(0, 32)).map(
            lambda ymd: "{:04d}-{:02d}-{:02d}".format(*ymd))
    if origin in (tuple, list):
        return st.one_of(st.lists(st.one_of(BAD, GOOD_TEXT), min_size=1, max_size=2),
                         GOOD_TEXT.map(lambda text: "[" + text))
    return BAD


def states(cls: type[Event]) -> st.SearchStrategy:
    """A stored state of `cls`, every key there, as the canonical writer leaves it."""
    caps = stored_values._caps(cls) if issubclass(cls, Fact) else {}
    fields = {name: values(info.annotation, caps.get(name))
              for name, info in cls.model_fields.items()}
    fields["event_type"] = st.just(topic_of(cls))
    if cls.class_version > 1:
        fields["class_version"] = st.sampled_from([cls.class_version, 1])
    return st.fixed_dictionaries(fields)


def mutate(data: st.DataObject, cls: type[Event], state: dict) -> dict:
    """One change that may make the state refused, or none."""
    how = data.draw(st.sampled_from(["none", "replace", "near", "nested", "drop", "add",
                                     "text"]))
    keys = sorted(state)
    if how == "near":
        name = data.draw(st.sampled_from(sorted(cls.model_fields)))
        state[name] = data.draw(near(cls.model_fields[name].annotation))
    elif how == "replace":
        state[data.draw(st.sampled_from(keys))] = data.draw(BAD)
    elif how == "nested":
        holder: Any = state
        key: Any = data.draw(st.sampled_from(keys))
        while isinstance(holder[key], (dict, list)) and holder[key]:
            holder = holder[key]
            key = data.draw(st.sampled_from(sorted(holder) if isinstance(holder, dict)
                                            else range(len(holder))))
        holder[key] = data.draw(BAD)
    elif how == "drop":
        del state[data.draw(st.sampled_from(keys))]
    elif how == "add":
        state[data.draw(TEXT)] = data.draw(BAD)
    elif how == "text" and (where := strings(state)):
        holder, key = data.draw(st.sampled_from(where))
        at = data.draw(st.integers(0, len(holder[key])))
        holder[key] = holder[key][:at] + data.draw(NASTY) + holder[key][at:]
    return state


def strings(value: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every string in a state."""
    pairs = value.items() if isinstance(value, dict) else enumerate(value)
    found = []
    for key, item in pairs:
        if isinstance(item, str) and key != "event_type":
            found.append((value, key))
        elif isinstance(item, (dict, list)):
            found += strings(item)
    return found


def encode(state: dict, how: str) -> bytes:
    if how == "canonical":
        try:
            raw = orjson.dumps(state, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # a lone surrogate, an integer over 64 bits: Python's writer
            how = "python"
    if how != "canonical":
        spaced = how == "python spaced"
        raw = json.dumps(state, sort_keys=True, ensure_ascii=how == "python ascii",
                         separators=None if spaced else (",", ":")).encode(
            "utf-8", "surrogatepass")
    for i, token in enumerate(RAW_TOKENS):
        raw = raw.replace(b'"%s"' % RAW.format(i).encode(), token)
    for number in numbers(state):
        raw = raw.replace(b'"%s"' % number.encode(), number.encode())
    return raw


def numbers(value: Any) -> list[Number]:
    if isinstance(value, Number):
        return [value]
    if isinstance(value, dict):
        return [n for item in value.values() for n in numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in numbers(item)]
    return []


def refused(cls: type[Event], raw: bytes) -> list[tuple[str, str]]:
    """What `audit verify`'s full check names: the event decoded as the store decodes it (one
    that does not decode, or whose envelope is refused, is the chain checks' finding)."""
    try:
        event = MAPPER.to_domain_event(StoredEvent(
            originator_id=uuid4(), originator_version=1, topic=topic_of(cls), state=raw))
    except Exception:  # noqa: BLE001 - exactly what verify's full check skips
        return []
    return stored_values.problems(event)


def ordinary(value: Any) -> bool:
    """No number of a size the pattern leaves to the full check (1e290 and above)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, dict, list)):
        return True
    if isinstance(value, (int, float)):
        return abs(value) < 1e18 if isinstance(value, int) else abs(value) < 1e280
    return all(map(ordinary, value.values() if isinstance(value, dict) else value))


def nesting(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    return 0


def shallow(state: dict) -> bool:
    """No field nested deeper than the pattern describes free-form JSON (left to the full
    check)."""
    return all(nesting(value) <= stored_values._DEPTH for value in state.values())


def printable(value: Any) -> bool:
    if isinstance(value, str):
        return c.unprintable(value) is None
    if isinstance(value, dict):
        return all(printable(key) and printable(item) for key, item in value.items())
    if isinstance(value, list):
        return all(printable(item) for item in value)
    return True


ENCODINGS = st.sampled_from(["canonical", "python", "python ascii", "python spaced"])


@settings(max_examples=3000)
@given(st.data())
def test_no_bytes_the_full_check_refuses_pass_the_byte_pattern(data):
    cls = data.draw(st.sampled_from(CLASSES))
    state = mutate(data, cls, data.draw(states(cls)))
    raw = encode(state, data.draw(ENCODINGS))
    problems = refused(cls, raw)
    fine = stored_values.plainly_fine(cls, compile_after=0)
    assert fine is not None, f"{cls.__name__}: every event type has a byte pattern"
    if problems:
        assert not fine(raw), (cls.__name__, problems, raw)


@settings(max_examples=300)
@given(st.data())
def test_what_the_ledger_writes_passes(data):
    """Valid events as the store writes them pass, text in any script included; only a
    29 February is left to the full check. (Text a command would refuse is left to it too,
    even in the trial's own events, which keep what they are given.)"""
    cls = data.draw(st.sampled_from(CLASSES))
    state = data.draw(states(cls))
    if not printable(state):
        return
    state.pop("event_type")
    if state.pop("class_version", cls.class_version) != cls.class_version:
        return
    try:
        event = cls.model_validate(state)
    except ValidationError:
        return
    try:
        raw = stored_bytes(event)
    except TypeError:  # an integer beyond 64 bits: no command takes one
        return
    if refused(cls, raw) or b"-02-29" in raw or not ordinary(state) or not shallow(state):
        return
    assert stored_values.plainly_fine(cls, compile_after=0)(raw), raw


def test_named_attacks_on_a_scan_are_all_left_to_the_full_check():
    """The forms the pattern must never pass, each in a place a scan stores it."""
    good = stored_bytes(ScanRecorded(
        originator_id=uuid4(), originator_version=2, recorded_at=datetime(2025, 1, 2, tzinfo=UTC),
        actor="dm", date=date(2025, 1, 2), targets=[{"lesion_id": "L1", "organ": "liver",
                                                     "mm": 12.5}],
        response={"overall_response": "PR", "target_sum_mm": 12.5}))
    fine = stored_values.plainly_fine(ScanRecorded, compile_after=0)
    assert fine(good)
    for old, new in [(b'"mm":12.5', b'"mm":1e999'), (b'"mm":12.5', b'"mm":NaN'),
                     (b'"liver"', b'"liv\\u0000er"'), (b'"liver"', b'"\\u202eliver"'),
                     (b'"liver"', b'"liver\xc2\x85"'), (b'"liver"', b'"\\ud800"'),
                     (b'"2025-01-02"', b'"2025-02-30"'), (b'"modality":"CT"', b'"modality":"PET"'),
                     (b'"target_sum_mm":12.5', b'"target_sum_mm":1E400'),
                     (b'"overall_response":"PR"', b'"overall_response":"P\\nR"'),
                     (b'"lesion_id":"L1"', b'"lesion_id":"L1","lesion_id":"\\u0000"')]:
        bad = good.replace(old, new, 1)
        assert bad != good
        assert not fine(bad), new
    huge = good.replace(b'"new_lesions":[]', b'"new_lesions":[%s]' % b",".join([b'"x"'] * 101))
    assert refused(ScanRecorded, huge) and not fine(huge)
