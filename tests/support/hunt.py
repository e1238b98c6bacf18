"""`make hunt`: the suite's property tests with many more examples than its own runs give
them, to look for a counterexample rather than to pass a gate.

Active only when `TIENDO_HUNT_EXAMPLES` is set. Each Hypothesis test then runs that many
generated examples, after its explicit ones and those its example database saved. A
counterexample is saved in that database (`.hypothesis/` in the working copy), so the next
plain `make test` replays it, and printed with its `@reproduce_failure` blob. (A test's
own `@settings` outrank a settings profile, hence a hook over the collected tests rather
than `settings.load_profile`.) The database and the randomness are set here because
Hypothesis's profile for CI (chosen when `CI` is set) has neither: a hunt run there would
try the same examples every time and keep nothing it found.
"""

import os

import pytest
from hypothesis import Phase, settings
from hypothesis.configuration import storage_directory
from hypothesis.database import DirectoryBasedExampleDatabase

HUNT_EXAMPLES = "TIENDO_HUNT_EXAMPLES"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    wanted = os.environ.get(HUNT_EXAMPLES)
    if not wanted:
        return
    examples = int(wanted)
    found = DirectoryBasedExampleDatabase(storage_directory("examples").path)
    for item in items:
        test = getattr(item, "obj", None)
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if own is None:
            continue
        test._hypothesis_internal_use_settings = settings(  # type: ignore[union-attr]
            own,
            max_examples=examples,
            phases=(Phase.explicit, Phase.reuse, Phase.generate),
            print_blob=True,
            derandomize=False,
            database=found,
        )
