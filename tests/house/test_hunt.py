"""`make hunt` (tests/support/hunt.py): with TIENDO_HUNT_EXAMPLES set, a property test
runs that many examples whatever its own `@settings` say, and a counterexample it finds
is saved where the next plain run replays it; without it, nothing changes."""

import os
import subprocess
import sys
from pathlib import Path

from tests.support.hunt import HUNT_EXAMPLES

ROOT = Path(__file__).resolve().parents[2]

# The second test names the database the hunt saves to (`.hypothesis/` in the working
# folder) itself: Hypothesis's profile for CI has none, and the plain run must replay it.
PROPERTY = """
from pathlib import Path
from hypothesis import given, settings, strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

CALLS = Path(__file__).with_name("calls")


@settings(max_examples=5, database=None)
@given(st.integers())
def test_counted(n):
    with CALLS.open("a") as f:
        f.write("x")


# its first example is the simplest, 0
@settings(max_examples=1, database=DirectoryBasedExampleDatabase(".hypothesis/examples"))
@given(st.integers(0, 10**9))
def test_fails_on_large(n):
    assert n < 900_000_000
"""


def _run(folder: Path, examples: str | None, test: str) -> subprocess.CompletedProcess[str]:
    # (a developer's own example folder would take the hunt's finds where the property
    # does not look)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (HUNT_EXAMPLES, "HYPOTHESIS_STORAGE_DIRECTORY")
    }
    if examples is not None:
        env[HUNT_EXAMPLES] = examples
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.support.hunt",
            "-p",
            "no:cacheprovider",
            "-c",
            os.devnull,
            "--rootdir",
            str(folder),
            f"test_property.py::{test}",
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_hunt_sets_the_examples_and_a_plain_run_replays_what_it_found(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_property.py").write_text(PROPERTY)
    calls = tmp_path / "calls"

    assert _run(tmp_path, None, "test_counted").returncode == 0
    assert len(calls.read_text()) == 5  # the test's own settings
    calls.unlink()
    assert _run(tmp_path, "120", "test_counted").returncode == 0
    assert len(calls.read_text()) == 120

    # Its own one example never fails it (0 of 40 seeds tried); 400 reach the top tenth
    # of the range (30 of 30 seeds). A plain run then fails only by replaying what the
    # hunt saved.
    assert _run(tmp_path, None, "test_fails_on_large").returncode == 0
    hunted = _run(tmp_path, "400", "test_fails_on_large")
    assert hunted.returncode == 1, hunted.stdout
    assert "@reproduce_failure" in hunted.stdout
    # saved in the example database, the counterexample fails the plain run too
    replayed = _run(tmp_path, None, "test_fails_on_large")
    assert replayed.returncode == 1, replayed.stdout
