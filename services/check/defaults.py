"""Two of the aggregator's defaults the check reads its snapshot by. The layers keep
`services.check` from importing `services.aggregator`, so they are stated here, once, for
the check's code and its command line; tests/house/test_check_defaults.py holds them to
`AggregatorSettings`."""

# How long the aggregator's snapshot reuses each unit's value one run-rate window ago:
# its TIENDO_AGGREGATOR_METRICS_WINDOW_REFRESH_SECONDS.
WINDOW_MAX_AGE_SECONDS = 300.0
# The deepest level the aggregator exports per-unit series of: its
# TIENDO_AGGREGATOR_METRICS_UNIT_LEVEL.
METRICS_UNIT_LEVEL = 2
