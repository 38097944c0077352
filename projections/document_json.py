"""The JSON text of answers: what the read models store in their document columns and what
`--json` prints, so an answer read from a read model and the same answer replayed print alike.

Not the canonical form (`m22bol.domain.canonical`): key order is kept as the document builds
it, the printed form is indented, and nothing here is ever hashed.
"""

from __future__ import annotations

from typing import Any

import orjson


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)  # a set has no order of its own: print it the same way every time
    from pydantic import BaseModel  # only for a value orjson cannot write itself

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def to_json(value: Any, *, indent: bool = False) -> str:
    """Dates ISO, key order kept; indented by two spaces for a person to read."""
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(value, default=_default, option=option).decode()


def plain(value: Any) -> Any:
    """The value as it reads back from JSON text: what a stored document holds."""
    return orjson.loads(to_json(value))
