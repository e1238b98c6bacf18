"""`tiendo.database.spare_connection`: a request holding a connection gets a second one only
when the pool has one free, and never waits for it (requests doing so would wait for each
other once the pool ran out)."""

import asyncio
import time

import asyncpg

from tiendo.database import spare_connection


async def test_a_second_connection_only_when_one_is_free_and_never_waited_for(
    database: str,
) -> None:
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    try:
        async with pool.acquire() as first:
            async with spare_connection(pool) as second:
                assert second is not None
                assert second is not first
                assert await second.fetchval("SELECT 1") == 1
                # the pool is spent: a third request's spare is None at once
                started = time.monotonic()
                async with spare_connection(pool) as third:
                    assert third is None
                assert time.monotonic() - started < 0.5
            # released with its block
            assert pool.get_idle_size() + 1 == pool.get_size()
            async with spare_connection(pool, wanted=False) as unwanted:
                assert unwanted is None
        async with spare_connection(None) as no_pool:
            assert no_pool is None
    finally:
        await pool.close()


async def test_requests_each_taking_a_spare_never_wait_for_each_other(database: str) -> None:
    """As many requests as the pool has connections, each holding one and asking for a
    second at the same moment: every one finishes (some with None)."""
    pool = await asyncpg.create_pool(database, min_size=3, max_size=3)
    got: list[bool] = []

    async def request() -> None:
        async with pool.acquire() as conn, spare_connection(pool) as beside:
            await asyncio.sleep(0.05)
            got.append(beside is not None)
            await conn.fetchval("SELECT 1")

    try:
        await asyncio.wait_for(asyncio.gather(*(request() for _ in range(3))), timeout=10)
    finally:
        await pool.close()
    assert len(got) == 3
    assert not all(got)  # three connections cannot be six
