"""The one canonical JSON form: keys sorted, no whitespace, UTF-8, dates ISO, numbers as JSON
numbers.

Everything the ledger hashes is hashed in this form: the stored bytes of every event (the hash
chain, `m22bol.ledger.store`) and a seal's digest (`m22bol.domain.trial.seal_digest`). It lives
in the domain because the seal digest is a domain rule and the domain imports nothing above it.
Printed answers and read-model documents use another form (`m22bol.projections.document_json`)
that keeps key order and may indent; that form never feeds a hash.
"""

from __future__ import annotations

from typing import Any

import orjson


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
