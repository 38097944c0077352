"""What text fields refuse: apart from the command models so that checking a claimed user name
costs no model import."""

from __future__ import annotations

import re

# C0 and C1 controls (DEL too), the bidirectional embeddings, overrides and isolates, and lone
# surrogates (they cannot be stored as UTF-8): none belongs in a clinical record, and each can
# make a terminal, an XML export or a reader's eyes show something else than what is stored.
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def unprintable(text: str) -> str | None:
    """The first character that text fields refuse, shown as an escape, or None."""
    found = UNPRINTABLE.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"
