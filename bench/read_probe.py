"""The read benchmark's probe: every read of `bench.reads.PROBED` in turn, one every
`INTERVAL` seconds, for a while, in its own process, so that a heavy read (the communes'
leaderboard holds its event loop for a quarter of a second) delays neither the viewers'
reads nor the writer. Prints one JSON line: each read's latency under whatever load runs
meanwhile, counted from when its schedule said to send it (a late read counts its wait).

Paced, not back to back: a probe that sends its next read as soon as the last one answers
is a client that never pauses, a whole core of a 2-core box, and the writer's freshness
measured that one client's load more than the 50 viewers' (2.65 s beside it, 0.47 s
without readers, on 2 December 2026).

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
from tiendo.lifespan import collect_for_serving

# seconds between two reads' schedules: each of the nine kinds every 4.5 s
INTERVAL = 0.5


async def probe(dsn: str, seconds: float) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        campaign = await board.campaign(conn, national.CAMPAIGN)
        assert campaign is not None
        named = await reads(conn, campaign)
        # as the aggregator does once started (the reads are its functions)
        collect_for_serving()
        samples: dict[str, list[float]] = {}
        due = time.perf_counter()
        end = due + seconds
        i = 0
        while due < end:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            name = PROBED[i % len(PROBED)]
            i += 1
            await named[name](conn)
            samples.setdefault(name, []).append(time.perf_counter() - due)
            due += INTERVAL
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
