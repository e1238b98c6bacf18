"""Upstream tokens are made, hashed and read like every tiendo secret (`tiendo.identity`)."""

from tiendo.identity.tokens import TOKEN_PREFIX, bearer, digest, new_token

__all__ = ["TOKEN_PREFIX", "bearer", "digest", "new_token"]
