"""Bearer secrets: generation, hashing, and reading them from an `Authorization` header."""

import hashlib
import secrets

TOKEN_PREFIX = "tdo_"  # noqa: S105 - a prefix, not a secret
MAX_TOKEN_LENGTH = 256
# an identity provider's signed token carries its claims: far longer than a tiendo secret
MAX_JWT_LENGTH = 8192


def new_token() -> str:
    """A fresh secret: 256 random bits, prefixed so leaked ones are easy to grep for."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    """What is stored and looked up: the SHA-256 of the secret."""
    return hashlib.sha256(token.encode()).digest()


def bearer(header: str | None, max_length: int = MAX_TOKEN_LENGTH) -> str | None:
    """The secret of an `Authorization: Bearer …` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > max_length:
        return None
    return value
