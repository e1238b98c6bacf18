"""A national campaign's database for the read benchmark: the national tree of
`bench.one_state` (11,000 units), one campaign of 8 indicators with a target on every
commune, and N stored events counted from the history.

The events are written with COPY and counted by the same recount an admin change runs
(`admin.replan(recount=True)`), not by the live apply: ten million events through the apply
take most of an hour on two cores, through COPY and one recount a few minutes. The counters,
daily counts and day rollups are what the apply would have kept (live equals history)."""

import random
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.one_state import INDICATORS, national_tree, set_targets
from services.aggregator import admin
from services.aggregator.admin import CampaignIn
from services.schema import migrate_all
from tiendo.database import Connection

CAMPAIGN = "national"
DAYS = 20  # the campaign has run this long when the reads are measured
RATIO_SNAPSHOT = 0.01
RATIO_SUBJECT = 0.30
SUBJECT_WINNERS = """
INSERT INTO subjects (indicator, subject, event_id, occurred_at, unit)
SELECT indicator, subject, event_id, occurred_at, unit FROM events WHERE subject IS NOT NULL
"""
EVENT_COLUMNS = ("event_id", "unit", "indicator", "kind", "value", "occurred_at", "subject")


def events(
    n: int, communes: Sequence[str], starts_at: datetime, until: datetime, prefix: str = "n"
) -> Iterator[tuple[Any, ...]]:
    """The event mix of `bench.payloads` (increments, 30 % citizens, 1 % snapshots) over
    the national communes, spread over [starts_at, until]: rows of EVENT_COLUMNS."""
    rng = random.Random(2026)
    span = (until - starts_at).total_seconds()
    for i in range(n):
        unit = rng.choice(communes)
        at = starts_at + timedelta(seconds=rng.uniform(0, span))
        roll = rng.random()
        if roll < RATIO_SNAPSHOT:
            yield (f"{prefix}{i}", unit, "cccd_collected", "snapshot", rng.randrange(500), at, None)
        elif roll < RATIO_SNAPSHOT + RATIO_SUBJECT:
            subject = f"{rng.getrandbits(256):064x}"
            yield (f"{prefix}{i}", unit, "eid_activated_l2", "increment", 1, at, subject)
        else:
            indicator = rng.choice(INDICATORS)
            yield (f"{prefix}{i}", unit, indicator, "increment", rng.randint(1, 3), at, None)


async def build(conn: Connection, n_events: int, now: datetime | None = None) -> dict[str, Any]:
    """Migrate, load the tree, the campaign, its targets and `n_events` counted events."""
    now = now or datetime.now(UTC)
    starts_at = now - timedelta(days=DAYS)
    units = national_tree()
    communes = [u.code for u in units if u.level == 4]
    await migrate_all(conn)
    # the database's search path (set by the migrations) reaches new sessions only
    await conn.execute("SET search_path = public, ingest, aggregator, notifier")
    async with conn.transaction():
        await admin.upsert_units(conn, units, "bench")
        await admin.upsert_campaign(
            conn,
            CAMPAIGN,
            CampaignIn(
                name="national",
                starts_at=starts_at,
                deadline=starts_at + timedelta(days=50),
                indicators=list(INDICATORS),
            ),
            "bench",
        )
        await set_targets(conn, communes, 1000)
    started = time.perf_counter()
    rows = events(n_events, communes, starts_at, now - timedelta(minutes=1))
    while chunk := [r for _, r in zip(range(200_000), rows, strict=False)]:
        await conn.copy_records_to_table("events", records=chunk, columns=EVENT_COLUMNS)
    copied = time.perf_counter() - started
    async with conn.transaction():
        # Every citizen of the mix is distinct: each subject event is its citizen's first,
        # so `counted` stays true and the winners are the events themselves (the general
        # RECOUNT_SUBJECTS re-decides `counted` for every subject event: minutes here).
        await conn.execute(SUBJECT_WINNERS)
        await admin.replan(conn, CAMPAIGN, recount=True)
    await conn.execute("VACUUM ANALYZE")
    return {
        "events": n_events,
        "units": len(units),
        "communes": len(communes),
        "indicators": len(INDICATORS),
        "copy_seconds": round(copied, 1),
        "load_seconds": round(time.perf_counter() - started, 1),
    }
