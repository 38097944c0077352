"""The installed `m22bol` command, run in a subprocess as a script acting as a person would
run it: the end-to-end tests share it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import TEST_PASSWORD


def m22bol_path() -> str:
    found = shutil.which("m22bol") or str(Path(sys.executable).with_name("m22bol"))
    assert os.path.exists(found), "install the project (make venv) to run e2e tests"
    return found


# A script acting as a person gives the person's password as M22BOL_PASSWORD.
PASSWORD = TEST_PASSWORD


def run(tmp_path, user, *args, check=True, input=None):
    env = {**os.environ, "M22BOL_LEDGER": f"sqlite:///{tmp_path}/trial.sqlite",
           "M22BOL_USER": user, "M22BOL_PASSWORD": PASSWORD}
    done = subprocess.run([m22bol_path(), *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, input=input)
    if check:
        assert done.returncode == 0, done.stderr
    return done
