"""The mapper: canonical bytes, upcasting on read, and the chain hash over stored bytes."""

import hashlib
from datetime import UTC, date, datetime
from typing import ClassVar
from uuid import uuid4

from eventsourcing.persistence import StoredEvent, Transcoder

from m22bol.domain.events import ContactRecorded
from m22bol.ledger.store import CanonicalTranscoder, PydanticMapper, event_hash


class ContactRecordedV2(ContactRecorded):
    """A later version that requires `method`, with an upcaster for stored v1 events."""

    class_version: ClassVar[int] = 2
    method: str

    @staticmethod
    def upcast_v1_v2(state):
        return {**state, "method": "not recorded"}


def mapper() -> PydanticMapper:
    transcoder: Transcoder = CanonicalTranscoder()
    return PydanticMapper(transcoder=transcoder)


def contact(**extra) -> ContactRecorded:
    return ContactRecorded(originator_id=uuid4(), originator_version=2, actor="dm",
                           recorded_at=datetime(2025, 1, 1, tzinfo=UTC), date=date(2025, 1, 1),
                           **extra)


def test_stored_bytes_are_canonical_and_hash_is_over_them():
    event = contact()
    stored = mapper().to_stored_event(event)
    assert stored.state.startswith(b'{"actor":"dm","date":"2025-01-01","deviation_reason"')
    assert b'"event_type":"domain.events:ContactRecorded"' in stored.state
    assert b" " not in stored.state
    assert event_hash(event) == hashlib.sha256(stored.state).hexdigest()
    again = mapper().to_domain_event(stored)
    assert again.model_dump() == event.model_dump()
    assert event_hash(again) == event_hash(event)


def test_old_events_are_upcast_on_read_and_keep_their_stored_hash():
    # What a version-1 event of the class stored: the same class, before `method` existed.
    topic = "domain.events:ContactRecordedV2"  # registered by defining the class
    old = mapper().to_stored_event(contact())
    old = StoredEvent(old.originator_id, old.originator_version, topic,
                      old.state.replace(b"domain.events:ContactRecorded", topic.encode()))
    upcast = mapper().to_domain_event(old)
    assert isinstance(upcast, ContactRecordedV2) and upcast.method == "not recorded"
    # The chain names the bytes as stored, not the upcast form.
    assert event_hash(upcast) == hashlib.sha256(old.state).hexdigest()
    fresh = mapper().to_stored_event(upcast)
    assert b'"class_version":2' in fresh.state
