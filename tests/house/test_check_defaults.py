"""`tiendo check` reads the aggregator's snapshot by two of its defaults (how long a window
value is reused, the deepest level with per-unit series), which the layers keep it from
importing (`services/check/defaults.py`). Should the aggregator's change, the check would
call the snapshot's honest figures disagreements, or stop comparing a level: held equal
here."""

from datetime import timedelta

from services.aggregator.settings import AggregatorSettings
from services.check import defaults, run


def test_the_checks_defaults_are_the_aggregators() -> None:
    fields = AggregatorSettings.model_fields
    assert fields["metrics_window_refresh_seconds"].default == defaults.WINDOW_MAX_AGE_SECONDS
    assert fields["metrics_unit_level"].default == defaults.METRICS_UNIT_LEVEL
    assert timedelta(seconds=defaults.WINDOW_MAX_AGE_SECONDS) == run.WINDOW_MAX_AGE
    assert run.METRICS_UNIT_LEVEL == defaults.METRICS_UNIT_LEVEL
