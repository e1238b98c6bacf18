"""Bearer tokens: generation, hashing, and the in-memory view ingest checks on every request."""

import hashlib
import secrets

TOKEN_PREFIX = "tdo_"  # noqa: S105 - a prefix, not a secret


def new_token() -> str:
    """A fresh token: 256 random bits, prefixed so leaked tokens are easy to grep for."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    """What is stored and looked up: the SHA-256 of the token."""
    return hashlib.sha256(token.encode()).digest()


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > 256:
        return None
    return value
