"""Progress bars: on standard error when it is a terminal, never with --json, never in a pipe.
Run through the installed command with standard error on a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import subprocess

import pytest

from tests.support.installed import m22bol_path

pytestmark = pytest.mark.e2e


def _demo(tmp_path, *extra: str, terminal: bool) -> tuple[str, str]:
    """(stdout, stderr) of a small demo; stderr on a pseudo-terminal when `terminal`."""
    env = {**os.environ, "M22BOL_LEDGER": f"sqlite:///{tmp_path}/demo-{terminal}{extra}.sqlite"}
    env.pop("COLUMNS", None)
    if not terminal:
        done = subprocess.run([m22bol_path(), "demo", "--patients", "3", *extra], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout, done.stderr
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([m22bol_path(), "demo", "--patients", "3", *extra], env=env,
                              stdout=subprocess.PIPE, stderr=follower, timeout=120)
        os.close(follower)
        err = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: everything was read
                break
            if not chunk:
                break
            err += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0, err
    return done.stdout.decode(), err.decode(errors="replace")


def test_a_terminal_sees_the_bar(tmp_path):
    out, err = _demo(tmp_path, terminal=True)
    assert "entering subjects" in err and "3/3" in err
    assert "entering subjects" not in out


def test_json_output_has_no_bar_even_on_a_terminal(tmp_path):
    out, err = _demo(tmp_path, "--json", terminal=True)
    assert "entering subjects" not in err
    assert out.lstrip().startswith("{")


def test_a_pipe_has_no_bar(tmp_path):
    _, err = _demo(tmp_path, terminal=False)
    assert err == ""
