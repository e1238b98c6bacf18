"""Today's counted events per unit go down as well as up, so the aggregator exports them as
a gauge: a counter that decreases is read by Prometheus as a reset, and the busiest-units
panel and `tiendo:unit_events:per_minute` showed it as a spike (test_board_promql.py)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.aggregator.metrics import UnitCollector
from services.aggregator.snapshot import unit_figures
from tests.support.world import build_world
from tiendo.counting import apply_events
from tiendo.event import Event, Kind

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime.now(UTC).replace(microsecond=0)
MIDNIGHT = datetime.combine(NOW.astimezone(ZONE).date(), datetime.min.time(), ZONE)
CCCD = "cccd_collected"


def _exported(collector: UnitCollector) -> dict[str, tuple[str, dict[str, float]]]:
    """Each family of a scrape: its type and its samples' values by unit."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        f.name: (f.type, {s.labels["unit"]: s.value for s in f.samples if "unit" in s.labels})
        for f in text_string_to_metric_families(text)
    }


async def test_a_withdrawn_winner_lowers_the_exported_events_of_today(database: str) -> None:
    await build_world(database, starts_at=MIDNIGHT - timedelta(days=5))
    today = MIDNIGHT + (NOW - MIDNIGHT) / 2
    collector = UnitCollector()
    conn = await asyncpg.connect(database)
    try:
        await apply_events(
            conn,
            [
                Event(f"t-{i}", "00004", CCCD, Kind.INCREMENT, 1, today, f"{i:064x}")
                for i in range(1, 6)
            ],
        )
        collector.snapshot = await unit_figures(conn, 2, NOW)
        before = _exported(collector)
        # subject 1's earlier event, arriving late in district 002: the winner moves there
        late = MIDNIGHT - timedelta(hours=12)
        await apply_events(
            conn, [Event("t-late", "00010", CCCD, Kind.INCREMENT, 1, late, f"{1:064x}")]
        )
        collector.snapshot = await unit_figures(conn, 2, NOW)
        after = _exported(collector)
    finally:
        await conn.close()
    assert before["tiendo_unit_events_today"] == ("gauge", {"01": 5, "001": 5, "002": 0})
    assert after["tiendo_unit_events_today"] == ("gauge", {"01": 4, "001": 4, "002": 0})
    assert [n for n in before if n.startswith("tiendo_unit_events")] == ["tiendo_unit_events_today"]
