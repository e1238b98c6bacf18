"""The notifier's SQL, one module per room. Callers own transactions; nothing here commits.

Reads tables the aggregator owns, never writing them: `units` (chiefs' contacts and the
tree), `campaigns` (name and timezone for messages) and `indicators` (names); the figures
it judges come from `tiendo.board`."""
