"""The notifier's SQL, one module per room. Callers own transactions; nothing here commits.

The notifier's tables are in its own schema (`notifier`, chiefs' contacts included); what
it reads of the aggregator's are the read-only views of `aggregator_read`: `units` (the
tree), `campaigns` (name and timezone for messages), `indicators` (names), `daily_counts`;
the figures it judges come from `tiendo.board`."""
