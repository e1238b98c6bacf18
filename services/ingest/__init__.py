"""The ingest service."""

from tiendo.database import SHARED, Migrations

# What its lifespan, its CLI and services/schema.py apply.
MIGRATIONS = Migrations("ingest", "services.ingest", after=(SHARED,))
