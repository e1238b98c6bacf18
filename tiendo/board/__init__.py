"""The board: the figures people act on, computed by one code for every reader.

The read API (progress, leaderboards), the metrics snapshot, the notifier's rules and its
weekly ranking, and `tiendo check` all take their figures from here, so a chief's alert,
a Grafana panel and the briefing's leaderboard can never disagree. It reads the
aggregator's tables and never writes them: a live figure comes from the counters and the
day rollups (`days`: run rates, days behind, ranks at the previous briefing), never from
the event history, which only `as_of` reads.
"""
