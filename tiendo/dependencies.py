"""FastAPI dependencies the services share: the database pool. Who may call a route is
`tiendo.identity.guard`'s."""

from typing import Annotated

import asyncpg
from fastapi import Depends, Request


def pool_of(request: Request) -> asyncpg.Pool:
    """The pool the service's lifespan opened (`tiendo.lifespan.open_database`)."""
    pool: asyncpg.Pool = request.app.state.pool
    return pool


Pool = Annotated[asyncpg.Pool, Depends(pool_of)]
