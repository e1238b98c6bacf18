"""Upstream tokens are made, hashed and read like every tiendo secret (`tiendo.identity`);
their names follow ingest's own rule (`name_problem`)."""

from services.ingest.rawids import contains_raw_id
from tiendo.identity.tokens import TOKEN_PREFIX, bearer, digest, new_token

__all__ = ["MAX_TOKEN_NAME_LENGTH", "TOKEN_PREFIX", "bearer", "digest", "name_problem", "new_token"]

# A token's name is copied into every event it sends (`source`: on Kafka, in the
# aggregator's events table, each row) and into logs; it names an upstream system
# ("vneid-hanoi"), which a hundred characters leave ample room for.
MAX_TOKEN_NAME_LENGTH = 100


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a token (None: it can). Never echoes the name."""
    if not name.strip():
        return "a token name must not be blank; name the upstream system"
    if len(name) > MAX_TOKEN_NAME_LENGTH:
        return (
            f"a token name must be at most {MAX_TOKEN_NAME_LENGTH} characters "
            f"(this one has {len(name)}); name the upstream system"
        )
    if contains_raw_id(name):
        return "a token name must not hold a raw ID number; name the upstream system"
    return None
