"""tiendo's shared library: event schema, domain math, settings, logging, DB and Kafka plumbing."""
