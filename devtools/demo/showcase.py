"""`python -m devtools demo showcase`: the README's "Units over time" figures, regenerated.

Starts a throwaway PostgreSQL in a temporary folder, seeds the demo with history exactly as
`TIENDO_DEMO_HISTORY=1 make dev` does (the 2023 tree, both 2025 cut-overs, Mệnh lệnh 01
(2023) counted), backfills the demo campaign up to a fixed "now", then reads through the
aggregator's real HTTP routes and prints Markdown: the live leaderboard of the 126
communes, the comparison with 2023 on the same day, and how the 579 wards of 2023 map.

The "now" is fixed and the demo's randomness seeded, so the output only changes when the
data or the rules do (docs/units-over-time.md)."""

import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from devtools.demo import history, seed, traffic, tree_chain
from devtools.localstack import PostgresServer, free_port
from services.aggregator import admin
from services.aggregator.app import create_app
from services.aggregator.settings import AggregatorSettings
from services.schema import migrate_all
from tiendo import counting
from tiendo.clock import ManualClock
from tiendo.database import Connection
from tiendo.event import Event, Kind
from tiendo.identity import manage
from tiendo.identity.model import Role
from tiendo.logs import configure_logging

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 12, 2, 12, tzinfo=TZ)
INDICATOR = "cccd_collected"
CITY = "01"
LEVEL = 2  # the 126 communes of 1 July 2025
SHOWN = 5
BATCH = 2000  # events per transaction, as history.seed_history_campaign applies them


@dataclass(frozen=True, slots=True)
class Showcase:
    """What the routes answered (their JSON bodies) and the crosswalk's counts."""

    now: datetime
    leaderboard: dict[str, Any]
    comparison: dict[str, Any]
    wards_2023: int
    exact: int
    split: int
    # official codes of the communes no split ward flows into: their 2023 figure is whole
    complete: frozenset[str]


async def seed_world(conn: Connection, now: datetime) -> int:
    """The demo with history as `make dev` seeds a fresh database with
    TIENDO_DEMO_HISTORY=1 (devtools/demo/cli.py), then the demo campaign's backfill up to
    `now` counted directly (what the demo's traffic sends through ingest). Returns how many
    demo events were counted."""
    campaign = seed.demo_campaign(now)
    async with conn.transaction():
        await history.load_trees(conn)
        await admin.upsert_campaign(conn, seed.CAMPAIGN_ID, campaign, "demo")
        targets = history.keyed_targets(await history.keys_now(conn))
        await admin.upsert_targets(conn, seed.CAMPAIGN_ID, targets, "demo")
    # after the commit, as `demo run` does: counting's batch tables empty at each commit,
    # and batches nested in one transaction (savepoints) would find the last one's keys
    await history.seed_history_campaign(conn)
    # The backfill names communes by official code, as the demo upstream does: counting
    # attributes a reused code (00004) to today's version, like a consumed batch.
    events = [
        Event(
            event_id=str(e["event_id"]),
            unit=str(e["unit"]),
            indicator=str(e["indicator"]),
            kind=Kind.INCREMENT,
            value=int(e["value"]),
            occurred_at=datetime.fromisoformat(str(e["occurred_at"])),
        )
        for e in traffic.backfill_events(
            seed.hanoi_communes(), campaign.starts_at, campaign.deadline, now
        )
    ]
    for i in range(0, len(events), BATCH):
        await counting.apply_events(conn, events[i : i + BATCH])
    return len(events)


async def reader_secret(conn: Connection) -> str:
    """An HQ reader (every unit), as the demo issues one."""
    return await manage.issue(
        conn, "showcase-reader", Role.reader, [], all_units=True, actor="showcase"
    )


async def read_routes(
    dsn: str, secret: str, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The leaderboard and the comparison through the aggregator's HTTP routes, in-process,
    on a clock stopped at `now` (no Kafka: the read API only)."""
    app = create_app(AggregatorSettings(database_url=dsn, consume=False), ManualClock(now))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://showcase",
            headers={"Authorization": f"Bearer {secret}"},
        ) as client:
            board = await client.get(
                f"/v1/campaigns/{seed.CAMPAIGN_ID}/leaderboard",
                params={"level": LEVEL, "indicator": INDICATOR, "limit": 1000},
            )
            board.raise_for_status()
            compared = await client.get(
                f"/v1/campaigns/{seed.CAMPAIGN_ID}/compare/{history.HISTORY_CAMPAIGN}",
                params={"indicator": INDICATOR, "unit": CITY},
            )
            compared.raise_for_status()
            result: tuple[dict[str, Any], dict[str, Any]] = (board.json(), compared.json())
            return result


async def build(dsn: str, now: datetime = NOW) -> Showcase:
    """Seed the (fresh) database at `dsn` and read the showcase's figures from it."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate_all(conn)
    finally:
        await conn.close()
    # a new session: the search path the migrations set (the services' schemas) applies
    # only to sessions opened after them
    conn = await asyncpg.connect(dsn)
    try:
        await seed_world(conn, now)
        secret = await reader_secret(conn)
    finally:
        await conn.close()
    board, compared = await read_routes(dsn, secret, now)
    chain = tree_chain.chain()
    return Showcase(
        now, board, compared, chain.wards_2023, chain.exact, chain.split, complete_communes()
    )


def complete_communes() -> frozenset[str]:
    """Communes (official codes) that receive no part of a split unit on 1 July 2025 (the
    1 January merges are all whole): their 2023 figure is the whole of their wards'."""
    rows = tree_chain.read("hanoi_crosswalk_2025.csv")
    partly = {r["new_code"] for r in rows if r["transfer"] == "part"}
    return frozenset(r["new_code"] for r in rows) - partly


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _board_rows(rows: list[dict[str, Any]]) -> list[str]:
    return [
        f"| {r['rank']} | `{r['unit']['code']}` | {r['unit']['name']} | {r['value']:,} "
        f"| {r['target']:,} | {_pct(r['pct'])} | {r['status']} |"
        for r in rows
    ]


def _compared_rows(rows: list[dict[str, Any]]) -> list[str]:
    return [
        f"| `{r['code']}` | {r['name']} | {r['value']:,} | {r['other_value']:,} "
        f"| {r['difference']:+,} | {_ratio(r['ratio'])} |"
        for r in rows
    ]


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def render(s: Showcase) -> str:
    """The Markdown pasted into the README."""
    board = s.leaderboard
    rows = board["rows"]
    c = s.comparison
    city = c["unit"]
    # Ahead and behind only among communes whose 2023 figure is whole: one that also
    # received part of a split ward got none of it (it stays at the city), so it would
    # look ahead by the share it never got. Ranked by ratio, so size does not decide.
    whole = [r for r in c["children"] if r["admin_code"] in s.complete and r["ratio"]]
    by_ratio = sorted(whole, key=lambda r: (-r["ratio"], r["code"]))
    board_head = [
        "| rank | code | name | value | target | pct | status |",
        "|--:|---|---|--:|--:|--:|---|",
    ]
    compared_head = [
        "| code | name | this year | 2023 | difference | ratio |",
        "|---|---|--:|--:|--:|--:|",
    ]
    lines = [
        f"Leaderboard of `{board['campaign']}`, `{board['indicator']}`, level {board['level']} "
        f"(communes), live at {s.now.isoformat()}: {board['total']} units ranked.",
        "",
        *board_head,
        *_board_rows(rows[:SHOWN]),
        "| … | | | | | | |",
        *_board_rows(rows[-SHOWN:]),
        "",
        f"`{c['campaign']}` against `{c['other']}`, `{c['indicator']}`, day {c['day']} of each "
        f"(at 00:00 on {datetime.fromisoformat(c['at']).astimezone(TZ):%Y-%m-%d} and on "
        f"{datetime.fromisoformat(c['other_at']).astimezone(TZ):%Y-%m-%d}), "
        f"on the {len(c['children'])} communes:",
        "",
        *compared_head,
        *_compared_rows([city]),
        f"| | unallocated: 2023 wards split without shares | | {c['unallocated']:,} | | |",
        "",
        f"Furthest ahead of 2023, by ratio, of the {len(whole)} communes that received "
        "only whole wards (their 2023 figure is complete):",
        "",
        *compared_head,
        *_compared_rows(by_ratio[:SHOWN]),
        "",
        "Furthest behind:",
        "",
        *compared_head,
        *_compared_rows(by_ratio[-SHOWN:][::-1]),
        "",
        f"Of the {s.wards_2023} wards of 2023, {s.exact} map exactly into one commune (every "
        f"step `whole`) and {s.split} were split.",
    ]
    return "\n".join(lines) + "\n"


async def showcase(now: datetime = NOW) -> str:
    """The showcase on a PostgreSQL of its own, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="tiendo-showcase-"))
    server = PostgresServer(folder / "pg", free_port(), fast=True)
    try:
        server.start()
        dsn = server.create_database("tiendo")
        return render(await build(dsn, now))
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    # warnings only: the output is the Markdown (the services log to stdout)
    configure_logging("WARNING", json=False)
    print(asyncio.run(showcase()), end="")  # noqa: T201 - the command's output
