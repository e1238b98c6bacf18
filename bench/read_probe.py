"""The read benchmark's probe: every read of `bench.reads.PROBED` in turn, one at a time,
for a while, in its own process, so that a heavy read (the communes' leaderboard holds its
event loop for a second) delays neither the viewers' reads nor the writer. Prints one JSON
line: each read's latency under whatever load runs meanwhile.

    python -m bench.read_probe --dsn ... --seconds 60"""

import argparse
import asyncio
import json
import time
from typing import Any

import asyncpg

from bench import national
from bench.reads import PROBED, reads, summary
from tiendo.board import repository as board


async def probe(dsn: str, seconds: float) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        campaign = await board.campaign(conn, national.CAMPAIGN)
        assert campaign is not None
        named = await reads(conn, campaign)
        samples: dict[str, list[float]] = {}
        end = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < end:
            name = PROBED[i % len(PROBED)]
            i += 1
            t0 = time.perf_counter()
            await named[name](conn)
            samples.setdefault(name, []).append(time.perf_counter() - t0)
        return {name: summary(s) for name, s in samples.items()}
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.read_probe", description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(probe(args.dsn, args.seconds))))


if __name__ == "__main__":
    main()
