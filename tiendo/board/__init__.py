"""The board: the figures people act on, computed by one code for every reader.

The read API (progress, leaderboards), the metrics snapshot, the notifier's rules and its
weekly ranking, and `tiendo check` all take their figures from here, so a chief's alert,
a Grafana panel and the briefing's leaderboard can never disagree. It reads the
aggregator's tables (counters live, the event history for `as_of` and run rates) and
never writes them.
"""
