"""FastAPI dependencies the services share: the database pool and the admin guard."""

import hmac
from collections.abc import Callable
from typing import Annotated

import asyncpg
from fastapi import Depends, Header, HTTPException, Request


def pool_of(request: Request) -> asyncpg.Pool:
    """The pool the service's lifespan opened (`tiendo.lifespan.open_database`)."""
    pool: asyncpg.Pool = request.app.state.pool
    return pool


Pool = Annotated[asyncpg.Pool, Depends(pool_of)]


def admin_guard(token: str, realm: str) -> Callable[..., str]:
    """A dependency that refuses a request without `Authorization: Bearer <token>` (401) and
    returns the actor for the audit log: `admin`, or `admin:<X-Tiendo-Actor>` when named."""

    def require_admin(
        authorization: Annotated[str | None, Header()] = None,
        x_tiendo_actor: Annotated[
            str | None, Header(max_length=100, description="who makes the change (audit log)")
        ] = None,
    ) -> str:
        scheme, _, given = (authorization or "").partition(" ")
        # constant time: the comparison must not tell an attacker how much of a guess was right
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise HTTPException(
                401,
                "an admin bearer token is required",
                headers={"WWW-Authenticate": f'Bearer realm="{realm}"'},
            )
        return f"admin:{x_tiendo_actor}" if x_tiendo_actor else "admin"

    return require_admin
