"""The notifier service."""

from tiendo.database import SHARED, Migrations

# What its lifespan, its CLI and services/schema.py apply.
MIGRATIONS = Migrations("notifier", "services.notifier", after=(SHARED,))
