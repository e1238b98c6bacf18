"""`tiendo check --metrics-url` holds the aggregator's per-unit series (`tiendo_unit_*`,
`tiendo_units`, `_done`) to the stored board figures (`board_figures`) of the same
snapshot pass (docs/check.md "The exported figures"): a real pass's scrape agrees exactly;
a figure that differs, a series missing, one exported for a unit it should not be, each is
named; a replica whose snapshot is not the table's is scraped again, and if they never meet
it is said, not compared."""

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI
from prometheus_client import generate_latest

from services.aggregator.metrics import (
    AggregatorMetrics,
    LevelFigures,
    UnitFigures,
    UnitSnapshot,
)
from services.aggregator.snapshot import unit_figures
from services.check.cli import report
from services.check.compare import BoardRow
from services.check.metrics import metrics_vs_board, parse_scrape
from services.check.run import Round, check, compare_metrics
from services.notifier.settings import NotifierSettings
from tests.boards.test_board_check import NOW, C, E, _world
from tiendo.counting import Key
from tiendo.pace import Status
from tiendo.web import add_ops_routes

A, B = "http://aggregator-a:8002/metrics", "http://aggregator-b:8002/metrics"
SECOND = timedelta(seconds=1)


class Replica:
    """An aggregator's exporter as its snapshot pass feeds it (`app._refresh_metrics`:
    `metrics.units.snapshot = await unit_figures(...)`), served by its own /metrics route
    and scraped in-process."""

    def __init__(self) -> None:
        self.metrics = AggregatorMetrics()
        self.app = FastAPI()
        add_ops_routes(self.app, self.metrics.registry)

    async def snapshot_pass(self, conn: asyncpg.Connection, at: datetime) -> None:
        # writes board_figures, then publishes the pass's figures: the aggregator's order
        self.metrics.units.snapshot = await unit_figures(conn, 2, at)

    async def scrape(self, url: str = "") -> str:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/metrics")
            response.raise_for_status()
            return response.text


def _settings(database: str) -> NotifierSettings:
    return NotifierSettings(database_url=database, bottom_rank_n=0, digest_times="")


def _named(found: Sequence[object]) -> set[str]:
    # "kind: campaign/unit/indicator: series" of each disagreement
    return {str(d).split(": exported")[0].split(", no ")[0] for d in found}


def _metrics(found: Round) -> list[str]:
    return [str(d) for d in found.disagreements if d.kind.startswith("metrics_")]


def _without(text: str, *patterns: str) -> str:
    return "".join(
        line
        for line in text.splitlines(keepends=True)
        if not any(re.search(p, line) for p in patterns)
    )


async def test_a_real_pass_agrees_and_each_difference_is_named(database: str) -> None:
    conn = await _world(database)
    replica = Replica()
    try:
        await replica.snapshot_pass(conn, NOW)
        text = await replica.scrape()

        async def scraped(url: str) -> str:
            assert url == A
            return text

        found = await check(database, _settings(database), 0, NOW, metrics_urls=[A], scrape=scraped)
        # `check` reads the alerts too (no notifier runs here): only the metrics' kinds
        assert _metrics(found) == []
        assert found.metrics is not None
        [look] = found.metrics
        assert (look.url, look.snapshot, look.note) == (A, NOW, "")
        # 01, 001, 002 in two indicators, and their level counts
        scrape = parse_scrape(text)
        assert sorted(scrape.units) == sorted(
            ("c1", unit, level, indicator)
            for unit, level in (("01", "1"), ("001", "2"), ("002", "2"))
            for indicator in (C, E)
        )
        assert look.series == scrape.series > 6 * 8
        assert report(found, boards=False)[-1] == (
            f"checked {found.keys} judged keys, {look.series} exported series of 1/1 "
            f"replicas and {found.alerts} open alerts: {len(found.disagreements)} disagreements"
        )

        # the table's figures are corrupted after the pass published its own: a pct a
        # hair off, a status
        await conn.execute(
            "UPDATE board_figures SET pct = pct * (1 + 1e-15) WHERE unit = '01' AND indicator = $1",
            E,
        )
        await conn.execute(
            "UPDATE board_figures SET status = 'stale' WHERE unit = '001' AND indicator = $1",
            C,
        )
        row = await conn.fetchrow(
            "SELECT status, pct FROM board_figures WHERE unit = '01' AND indicator = $1", E
        )
        assert row is not None
        [status] = (
            s.value
            for s in Status
            if f'tiendo_unit_status{{campaign="c1",indicator="{C}",level="2",status='
            f'"{s.value}",unit="001"}} 1.0' in text
        )
        assert status != "stale"
        # ... and the scrape loses series: every one of district 002's cccd, the
        # expected value of the city's eid; it gains the ward 00004 (level 3, deeper than
        # the metrics level) and a wrong count of done wards
        altered = _without(
            text,
            rf'^tiendo_unit_\w+\{{campaign="c1",indicator="{C}",level="2",.*unit="002"',
            rf'^tiendo_unit_expected\{{campaign="c1",indicator="{E}",level="1",.*unit="01"',
            rf'^tiendo_units_done\{{campaign="c1",indicator="{E}",level="3"\}}',
        )
        altered += (
            f'tiendo_unit_value{{campaign="c1",indicator="{C}",level="3",unit="00004"}} 5.0\n'
            f'tiendo_units_done{{campaign="c1",indicator="{E}",level="3"}} 3.0\n'
        )

        async def corrupt(url: str) -> str:
            return altered

        look = await compare_metrics(conn, A, 2, SECOND, corrupt)
        assert look.snapshot == NOW
        assert _named(look.disagreements) == {
            f"metrics_figures: c1/01/{E}: tiendo_unit_pct",
            f"metrics_figures: c1/01/{E}: tiendo_unit_expected",
            f'metrics_figures: c1/001/{C}: tiendo_unit_status{{status="stale"}}',
            f'metrics_figures: c1/001/{C}: tiendo_unit_status{{status="{status}"}}',
            f"metrics_missing: c1/002/{C}: in board_figures (level 2, target 1000)",
            f"metrics_unjudged: c1/00004/{C}",
            f'metrics_figures: c1/*/{E}: tiendo_units_done{{level="3"}}',
        }
        shown = {str(d) for d in look.disagreements}
        [pct] = (d for d in shown if "tiendo_unit_pct" in d)
        assert pct.endswith(f"board_figures {row['pct']!r} ({A})"), pct
        assert any(
            d.startswith(f"metrics_figures: c1/01/{E}: tiendo_unit_expected: exported nothing")
            for d in shown
        ), shown
        assert any(
            "its board_figures row is of level 3, deeper than the metrics level 2" in d
            for d in shown
        ), shown
    finally:
        await conn.close()


async def test_a_replica_whose_snapshot_is_not_the_tables_is_said_not_compared(
    database: str,
) -> None:
    conn = await _world(database)
    a, b = Replica(), Replica()
    try:
        # replica A's pass, then B's (they take turns): the table is B's
        await a.snapshot_pass(conn, NOW)
        await b.snapshot_pass(conn, NOW + 10 * SECOND)
        # A's figures differ from the table's (B's pass is later): never compared
        await conn.execute("UPDATE board_figures SET value = value + 7")
        await b.snapshot_pass(conn, NOW + 10 * SECOND)
        replicas = {A: a, B: b}

        async def scrape(url: str) -> str:
            return await replicas[url].scrape()

        found = await check(
            database,
            _settings(database),
            0,
            NOW + 20 * SECOND,
            metrics_urls=[A, B],
            board_wait=SECOND,
            scrape=scrape,
        )
        assert _metrics(found) == []
        assert found.metrics is not None
        looks = {m.url: m for m in found.metrics}
        assert (looks[A].snapshot, looks[A].series) == (None, 0)
        assert (looks[B].snapshot, looks[B].note) == (NOW + 10 * SECOND, "")
        # after the disagreements (the alerts': no notifier runs here), before the summary
        lines = report(found, boards=False)[len(found.disagreements) :]
        assert len(lines) == 2
        assert lines[0].startswith(f"metrics not compared: {A}: not the table's pass in "), lines
        assert (
            "last scrape's snapshot 2023-05-20T05:00:00+00:00, board_figures judged at "
            "2023-05-20T05:00:10+00:00"
        ) in lines[0]
        assert f"exported series of 1/2 replicas and {found.alerts} open alerts: " in lines[-1]

        # a replica that publishes its pass a moment after writing it is scraped again
        await a.snapshot_pass(conn, NOW + 30 * SECOND)
        stale, fresh = await b.scrape(), await a.scrape()
        texts = iter([stale, stale, fresh])

        async def catching_up(url: str) -> str:
            return next(texts)

        look = await compare_metrics(conn, A, 2, 5 * SECOND, catching_up, every=0.05)
        assert (look.snapshot, look.disagreements) == (NOW + 30 * SECOND, [])

        # none given: not compared, and the summary line says so
        found = await check(database, _settings(database), 0, NOW + 40 * SECOND)
        assert found.metrics is None
        assert "metrics not compared (no --metrics-url)" in report(found, boards=False)[-1]
    finally:
        await conn.close()


def test_every_figure_is_compared_exactly_as_the_exporter_writes_it() -> None:
    """Without HTTP nor a database: figures whose text the exporter writes in Go's
    exponent form (over 10^6) or with 17 digits parse back to the stored value, and a
    figure one float apart is a disagreement."""
    at = datetime(2023, 5, 20, 5, 0, 0, 123457, tzinfo=UTC)
    projected = at + timedelta(days=40, microseconds=1)
    row = BoardRow(
        level=2,
        unit_name="Quận Ba Đình",
        parent_code="01",
        value=12_345_678_901,
        baseline=0,
        target=30_000_000_000,
        expected=12_345_678.901234567,
        pct=100 * 12_345_678_901 / 30_000_000_000,
        pace=1 / 3,
        run_rate_7d=None,
        required_daily_rate=None,
        projected_completion=projected,
        status="behind",
        last_event_at=at - timedelta(microseconds=999_999),
        deadline=at + timedelta(days=50),
        rank=1,
    )
    key = Key("c1", "001", C)

    def scraped(stored: BoardRow) -> str:
        metrics = AggregatorMetrics()
        metrics.units.snapshot = UnitSnapshot(
            units=[
                UnitFigures(
                    campaign="c1",
                    unit="001",
                    level=stored.level,
                    indicator=C,
                    value=stored.value,
                    target=stored.target,
                    expected=stored.expected,
                    pct=stored.pct,
                    pace=stored.pace,
                    status=Status(stored.status),
                    projected_completion=stored.projected_completion,
                    last_event_at=stored.last_event_at,
                )
            ],
            levels=[LevelFigures("c1", stored.level, C, 1, 0)],
            taken_at=at,
        )
        return generate_latest(metrics.registry).decode()

    text = scraped(row)
    # the Go exponent form, parsed back
    assert "e+09" in text
    assert "e+07" in text
    scrape = parse_scrape(text)
    assert scrape.taken_at == at.timestamp()
    assert metrics_vs_board(scrape, {key: row}, 2) == []
    assert len(metrics_vs_board(scrape, {key: row}, 1)) == 1  # exported deeper than 1

    apart: dict[str, Any] = {
        "expected": row.expected + 2e-9,  # the next float up, at 1.2e7
        "pace": 1 / 3 + 2**-54,
        "projected_completion": projected + timedelta(microseconds=1),
        "last_event_at": None,
        "pct": None,
    }
    for name, value in apart.items():
        other = replace(row, **{name: value})
        assert getattr(other, name) != getattr(row, name)
        found = metrics_vs_board(scrape, {key: other}, 2)
        assert len(found) == 1, (name, found)
        assert found[0].kind == "metrics_figures"
        assert found[0].detail.startswith(f"tiendo_unit_{name.removesuffix('_at')}"), found
        # and the figures exported from the altered row agree with it exactly
        assert metrics_vs_board(parse_scrape(scraped(other)), {key: other}, 2) == []
