"""What the ledger vouches for reaches the domain as a typed value: a command whose value the
ledger did not supply fails as a bug naming the field, and the seal's event count is the heads'."""

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m22bol.domain import commands as c
from m22bol.domain.decide import Context, Vouched, decide_subject, decide_trial
from m22bol.domain.protocol import bundled_protocol_text
from m22bol.domain.trial import project_trial, seal_digest

CTX = Context(actor="admin", now=datetime(2025, 3, 1, 12, tzinfo=UTC))
HEADS = st.lists(st.tuples(st.uuids().map(str), st.integers(1, 10_000),
                           st.text("0123456789abcdef", min_size=64, max_size=64)),
                 max_size=20).map(lambda heads: tuple(sorted(heads)))


def initialised():
    decision = decide_trial(c.Init(), None, CTX, Vouched(protocol_text=bundled_protocol_text()))
    return project_trial(None, decision.events)


def test_the_value_type_cannot_be_changed_after_the_ledger_built_it():
    vouched = Vouched(head_digest="ab" * 32)
    with pytest.raises(FrozenInstanceError):
        vouched.head_digest = "cd" * 32  # type: ignore[misc]


@pytest.mark.parametrize(("command", "field"), [
    (c.Seal(note="month 3"), "seal_heads"),
    (c.SetPassword(password="signing-pass-1"), "password_hash"),
    (c.ResetPassword(user="dm", password="signing-pass-1"), "password_hash"),
    (c.AmendProtocol(file="amendment.toml", reason="new basket"), "protocol_text"),
])
def test_a_trial_command_without_its_vouched_value_is_a_type_error_naming_it(command, field):
    with pytest.raises(TypeError, match=f"{command.name}: the ledger must vouch for {field}"):
        decide_trial(command, initialised(), CTX)


def test_init_without_the_protocol_text_is_a_type_error():
    with pytest.raises(TypeError, match="init: the ledger must vouch for protocol_text"):
        decide_trial(c.Init(), None, CTX)


def test_a_signature_without_the_head_digest_is_a_type_error():
    from m22bol.domain.patient import project_patient

    trial = initialised()
    registered = decide_subject(c.Register(subject="M22-001", site="S1",
                                           consent_date="2025-01-02"),
                                None, trial.protocol, CTX)
    patient = project_patient(None, registered.events)
    with pytest.raises(TypeError, match="sign: the ledger must vouch for head_digest"):
        decide_subject(c.Sign(subject="M22-001", meaning="reviewed", password="signing-pass-1"),
                       patient, trial.protocol, CTX)


@given(HEADS)
def test_a_seal_counts_the_events_its_heads_cover_and_its_digest_covers_them(heads):
    decision = decide_trial(c.Seal(note="month 3"), initialised(), CTX, Vouched(seal_heads=heads))
    (seal,) = decision.events
    assert seal.heads == heads
    assert seal.event_count == sum(version for _, version, _ in heads)
    assert seal.digest == seal_digest(seal)
    assert decision.output["chains"] == len(heads)
