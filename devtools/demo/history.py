"""The demo with history (`make dev DEMO_HISTORY=1`, `python -m devtools demo run
--history`): Hà Nội as tiendo would have known it since 2023 — the 2023 tree, the 53 merges
of 1 January 2025, the 126 communes of 1 July 2025 — with Mệnh lệnh 01 (10 May – 30 June
2023) counted on the old tree, so today's campaign can be compared with it on the new one
(docs/units-over-time.md)."""

import csv
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from zoneinfo import ZoneInfo

from devtools.demo import seed, traffic
from services.aggregator import admin
from services.aggregator.admin import CampaignIn, TargetIn
from services.aggregator.tree_load import (
    CrosswalkIn,
    TreeUnitIn,
    TreeVersionIn,
    load_tree_version,
)
from tiendo import counting
from tiendo.database import Connection
from tiendo.event import Event, Kind

HISTORY_CAMPAIGN = "ml01-2023"
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
CUT_OVERS = (
    (date(2025, 1, 1), "hanoi_units_2025-01.csv", "hanoi_crosswalk_2025-01_inferred.csv"),
    (date(2025, 7, 1), "hanoi_units_2025.csv", "hanoi_crosswalk_2025.csv"),
)


def _read(name: str) -> list[dict[str, str]]:
    text = (resources.files("devtools.demo") / "data" / name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def tree_version(units: str, crosswalk: str) -> TreeVersionIn:
    return TreeVersionIn(
        units=[
            TreeUnitIn(
                code=r["code"],
                name=r["name"],
                type=r["type"],
                level=int(r["level"]),
                parent_code=r["parent_code"] or None,
            )
            for r in _read(units)
        ],
        crosswalk=[
            CrosswalkIn(
                old_code=r["old_code"],
                new_code=r["new_code"],
                transfer="whole" if r["transfer"] == "whole" else "part",
                share=Decimal(r["share"]) if r.get("share") else None,
            )
            for r in _read(crosswalk)
        ],
    )


async def load_trees(conn: Connection) -> None:
    """The 2023 tree as the first versions, then both cut-overs (first run only)."""
    await admin.upsert_units(conn, seed.hanoi_units(), "demo")
    for day, units, crosswalk in CUT_OVERS:
        await load_tree_version(conn, day, tree_version(units, crosswalk), "demo")


async def keys_now(conn: Connection) -> dict[str, str]:
    """Official code → key of the version in force now (a reused code's key is
    `<code>@<day>`)."""
    rows = await conn.fetch("SELECT admin_code, code FROM units WHERE valid_to IS NULL")
    return {r["admin_code"]: r["code"] for r in rows}


def keyed_targets(keys: dict[str, str]) -> list[TargetIn]:
    """The demo campaign's commune targets on the keys of today's versions."""
    return [
        TargetIn(unit=keys[t.unit], indicator=t.indicator, target=t.target)
        for t in seed.demo_targets(seed.hanoi_communes())
    ]


async def seed_history_campaign(conn: Connection) -> int:
    """Mệnh lệnh 01 of 2023 on the 2023 wards, its reports counted (returns how many)."""
    wards = seed.hanoi_wards()
    campaign = seed.demo_campaign(datetime(2023, 6, 1, 12, tzinfo=TZ))  # 10 May – 30 Jun
    # The campaign in a transaction of its own (its plan is staged in a table dropped at
    # commit), the events after it: counting's batch tables empty only at a commit, so
    # batches must not share one transaction (call this outside any).
    async with conn.transaction():
        await admin.upsert_campaign(
            conn,
            HISTORY_CAMPAIGN,
            CampaignIn(
                name="Mệnh lệnh 01 (2023)",
                starts_at=campaign.starts_at,
                deadline=campaign.deadline,
                indicators=campaign.indicators,
            ),
            "demo",
        )
        await admin.upsert_targets(conn, HISTORY_CAMPAIGN, seed.demo_targets(wards), "demo")
    events = [
        Event(
            event_id=str(e["event_id"]).replace("demo-bf-", "ml01-2023-"),
            unit=str(e["unit"]),
            indicator=str(e["indicator"]),
            kind=Kind.INCREMENT,
            value=int(e["value"]),
            occurred_at=datetime.fromisoformat(str(e["occurred_at"])),
        )
        for e in traffic.backfill_events(
            wards, campaign.starts_at, campaign.deadline, campaign.deadline
        )
    ]
    for i in range(0, len(events), 2000):
        await counting.apply_events(conn, events[i : i + 2000])
    return len(events)
