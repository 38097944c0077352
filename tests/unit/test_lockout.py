"""The lockout rule as a property of the trial aggregate: a user is locked out exactly when the
failures since their last accepted password or password (re)set number 5 or more."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from m22bol.domain import events as e
from m22bol.domain.trial import LOCKOUT_AFTER, TRIAL_ID, project_trial

NOW = datetime(2027, 1, 1, tzinfo=UTC)


def _event(kind: str, version: int, user: str) -> e.Event:
    env = {"originator_id": TRIAL_ID, "originator_version": version, "recorded_at": NOW,
           "actor": "admin"}
    if kind == "fail":
        return e.AuthenticationFailed(**env, user=user, account="acct", attempt="password",
                                      message="wrong")
    if kind == "success":
        return e.AuthenticationSucceeded(**env, user=user)
    return e.PasswordSet(**env, user=user, password_hash="scrypt$1$8$1$AA==$AA==")


@given(st.lists(st.tuples(st.sampled_from(["fail", "success", "reset"]),
                          st.sampled_from(["dm", "inv"])), max_size=30))
def test_locked_out_after_five_failures_in_a_row(steps):
    init = e.TrialInitialised(originator_id=TRIAL_ID, originator_version=1, recorded_at=NOW,
                              actor="admin", trial="M22BOL", protocol_text="",
                              protocol_digest="", protocol_version="1", admin="admin")
    events = [init, *(_event(kind, n, user) for n, (kind, user) in enumerate(steps, start=2))]
    trial = project_trial(None, events)
    for user in ("dm", "inv"):
        run = 0
        for kind, who in steps:
            if who == user:
                run = run + 1 if kind == "fail" else 0
        assert trial.locked_out(user) == (run >= LOCKOUT_AFTER)
