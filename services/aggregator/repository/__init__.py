"""The aggregator's SQL, one module per room. Callers own transactions; nothing here commits."""
