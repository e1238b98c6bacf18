"""Bearer secrets: generation, hashing, and reading them from an `Authorization` header."""

import hashlib
import secrets

TOKEN_PREFIX = "tdo_"  # noqa: S105 - a prefix, not a secret
MAX_TOKEN_LENGTH = 256


def new_token() -> str:
    """A fresh secret: 256 random bits, prefixed so leaked ones are easy to grep for."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    """What is stored and looked up: the SHA-256 of the secret."""
    return hashlib.sha256(token.encode()).digest()


def bearer(header: str | None) -> str | None:
    """The secret of an `Authorization: Bearer …` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > MAX_TOKEN_LENGTH:
        return None
    return value
