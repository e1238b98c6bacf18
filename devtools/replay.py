"""Replay the demo campaign (Hà Nội, "Mệnh lệnh 01", 51 days) through the notifier's
evaluator on simulated time, and print its alert timeline.

    python -m devtools.replay [--dsn postgresql://…] [--step-hours 1] [--out FILE]

Without --dsn a throw-away PostgreSQL server is started in a temporary folder. The demo's
deterministic backfill reports (devtools/demo/traffic.py) are counted by the aggregator's
own apply as simulated time reaches them, and at each step `Evaluator.evaluate_at(step)`
judges the board as it would in production, with one
`ManualClock` as the only source of time. Messages are queued (not sent) to the chiefs'
demo email addresses, and counted."""

import argparse
import asyncio
import json
import tempfile
from bisect import bisect_right
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from devtools.demo import seed, traffic
from devtools.localstack import PostgresServer, free_port
from services.aggregator import admin
from services.aggregator.repository.apply import apply_events
from services.notifier.evaluator import Evaluator
from services.notifier.render import Renderer
from services.notifier.settings import NotifierSettings
from services.schema import migrate_all
from tiendo.clock import ManualClock
from tiendo.database import create_pool
from tiendo.event import Event, Kind

# The policy replayed: the defaults, with `for` durations that let a ward miss one of its
# twice-daily reports without an alert, and no digests (they would be 2 × 610 a day).
POLICY: dict[str, Any] = {
    "behind": {"for_seconds": 12 * 3600},
    "at_risk": {"for_seconds": 24 * 3600},
    "stale": {"for_seconds": 12 * 3600},
    "digest_times": [],
}
TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def _local(at: datetime | None) -> str:
    return at.astimezone(TZ).strftime("%d/%m %H:%M") if at else "—"


async def replay(dsn: str, step: timedelta, out: Path | None) -> str:
    pool = await create_pool(dsn, max_size=4)
    async with pool.acquire() as conn:
        await migrate_all(conn)
    units = seed.hanoi_units()
    wards = seed.hanoi_wards()
    campaign = seed.demo_campaign(datetime(2023, 6, 1, 12, tzinfo=TZ))  # 10 May - 30 Jun 2023
    async with pool.acquire() as conn, conn.transaction():
        await admin.upsert_units(conn, units, "replay")
        await admin.upsert_campaign(conn, seed.CAMPAIGN_ID, campaign, "replay")
        await admin.upsert_targets(conn, seed.CAMPAIGN_ID, seed.demo_targets(wards), "replay")
        await conn.execute(
            "INSERT INTO alert_policies (campaign_id, config) VALUES ($1, $2)"
            " ON CONFLICT (campaign_id) DO UPDATE SET config = EXCLUDED.config",
            seed.CAMPAIGN_ID,
            json.dumps(POLICY),
        )

    level = {u.code: u.level for u in units}
    name = {u.code: u.name for u in units}
    reports = sorted(
        (
            Event(
                event_id=str(e["event_id"]),
                unit=str(e["unit"]),
                indicator=str(e["indicator"]),
                kind=Kind.INCREMENT,
                value=int(e["value"]),
                occurred_at=datetime.fromisoformat(str(e["occurred_at"])),
            )
            for e in traffic.backfill_events(
                wards, campaign.starts_at, campaign.deadline, campaign.deadline
            )
        ),
        key=lambda e: e.occurred_at,
    )

    times = [e.occurred_at for e in reports]
    settings = NotifierSettings(database_url=dsn)
    evaluator = Evaluator(settings, Renderer(), ("email",))
    clock = ManualClock(campaign.starts_at)
    messages: Counter[str] = Counter()
    escalations: list[tuple[datetime, int, str, int]] = []
    end = campaign.deadline + timedelta(days=1)
    applied = 0
    while clock.now() <= end:
        at = clock.now()
        # The aggregator's own apply counts the reports made by now: the notifier then
        # judges the board exactly as it would in production.
        due = bisect_right(times, at, lo=applied)
        if due > applied:
            async with pool.acquire() as conn:
                await apply_events(conn, reports[applied:due])
            applied = due
        summary = await evaluator.evaluate_at(pool, at)
        for _, _, kind in summary.messages:
            messages[kind] += 1
        escalations.extend((at, a, r, lvl) for a, r, lvl in summary.escalations)
        clock.advance(step)

    async with pool.acquire() as conn:
        alerts = await conn.fetch(
            "SELECT * FROM alerts WHERE state <> 'pending' ORDER BY fired_at, unit, indicator, rule"
        )
    await pool.close()
    return _report(alerts, escalations, messages, name, level, out)


def _report(
    alerts: list[asyncpg.Record],
    escalations: list[tuple[datetime, int, str, int]],
    messages: Counter[str],
    name: dict[str, str],
    level: dict[str, int],
    out: Path | None,
) -> str:
    up: dict[int, list[str]] = defaultdict(list)
    for at, alert_id, recipient, lvl in escalations:
        up[alert_id].append(f"L{lvl}→{recipient} {_local(at)}")
    lines = [
        "| unit | level | indicator | rule | fired at | resolved at | escalations |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in alerts:
        lines.append(
            f"| {a['unit']} {name.get(a['unit'], '')} | {level.get(a['unit'])} | "
            f"{a['indicator']} | {a['rule']} | {_local(a['fired_at'])} | "
            f"{_local(a['resolved_at'])} | {', '.join(up.get(a['id'], [])) or '—'} |"
        )
    table = "\n".join(lines) + "\n"
    if out is not None:
        out.write_text(table, encoding="utf-8")
    by_rule = Counter((a["rule"], "resolved" if a["resolved_at"] else "firing") for a in alerts)
    by_level = Counter((level.get(a["unit"]), a["rule"]) for a in alerts)
    summary = [
        f"alerts fired: {len(alerts)}",
        "by rule (firing at the end / resolved): "
        + ", ".join(f"{r} {s} {n}" for (r, s), n in sorted(by_rule.items())),
        "by unit level and rule: "
        + ", ".join(f"L{lv} {r} {n}" for (lv, r), n in sorted(by_level.items(), key=str)),
        f"escalations: {len(escalations)} "
        f"(to level 2 units: {sum(1 for e in escalations if level.get(e[2]) == 2)}, "
        f"to the city: {sum(1 for e in escalations if level.get(e[2]) == 1)})",
        "grouped messages queued per chief: "
        + ", ".join(f"{k} {n}" for k, n in sorted(messages.items())),
    ]
    return "\n".join(summary) + "\n\n" + table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="an empty PostgreSQL database (default: a temporary one)")
    parser.add_argument("--step-hours", type=float, default=1.0)
    parser.add_argument("--out", type=Path, help="write the full timeline table here")
    args = parser.parse_args()
    step = timedelta(hours=args.step_hours)
    if args.dsn:
        print(asyncio.run(replay(args.dsn, step, args.out)))  # noqa: T201
        return
    with tempfile.TemporaryDirectory(prefix="tiendo-replay-") as folder:
        server = PostgresServer(Path(folder), free_port(), fast=True)
        server.start()
        try:
            print(asyncio.run(replay(server.dsn(), step, args.out)))  # noqa: T201
        finally:
            server.stop()


if __name__ == "__main__":
    main()
