"""Every board tells the truth: the three services run on real ports against the real broker
and database, Debian's Prometheus scrapes them with the repository's rule files, and every
query of every panel and variable of every provisioned board is executed — PromQL through
Prometheus's HTTP API, SQL against PostgreSQL — failing on an error or an empty result."""

import importlib.util
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from devtools.localstack import KafkaBroker, free_port
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.settings import AggregatorSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.notifier.app import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from tests.boards.grafana import (
    BOARDS,
    VARIABLES,
    boards,
    interpolate,
    panel_queries,
    panels,
    variable_queries,
)
from tests.boards.live import (
    PROMETHEUS,
    PROMETHEUS_DIR,
    Receiver,
    prom_query,
    prometheus_server,
    serving,
)
from tests.support.identities import READER
from tests.support.stack import REPO, ServiceKwargs, Topics, eventually
from tests.support.world import WARDS, build_world, issue_token
from tiendo import counting
from tiendo.event import Event, Kind

needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="Debian's `prometheus` binary is not installed (apt-get install prometheus); "
    ".ci/run installs it so CI always runs the board check",
)

START = datetime.now(UTC) - timedelta(days=10)
INDICATORS = ("cccd_collected", "eid_activated_l2")
# Ward 00004 reaches its target, 00007 keeps pace, 00010 (alone in district 002) lags.
DONE = {"00004": 1000, "00007": 250, "00010": 20}


def test_boards_are_what_make_dashboards_generates(tmp_path: Path) -> None:
    generator = importlib.import_module("scripts.dashboards")
    written = generator.generate(tmp_path)
    assert {p.name for p in written} == {p.name for p in BOARDS.glob("*.json")}
    for path in written:
        assert (BOARDS / path.name).read_text() == path.read_text(), (
            f"{path.name} is out of date: run make dashboards"
        )


def test_every_panel_is_titled_described_placed_and_queries_a_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/tiendo.yml").read_text()
    )
    uids = {ds["uid"] for ds in provisioned["datasources"]}
    assert uids == {"prometheus", "postgres"}
    for name, board in boards().items():
        assert board["uid"] == name
        taken: set[tuple[int, int]] = set()
        for panel in panels(board):
            pos = panel["gridPos"]
            cells = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert pos["x"] + pos["w"] <= 24, f"{name}: {panel['title']} is wider than the grid"
            assert not cells & taken, f"{name}: {panel['title']} overlaps another panel"
            taken |= cells
            if panel["type"] == "row":
                continue
            assert panel["title"], f"{name}: a panel has no title"
            assert panel.get("description"), f"{name}: {panel['title']} has no description"
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            for target in panel["targets"]:
                assert (target.get("datasource") or panel["datasource"])["uid"] in uids
    assert {q.board for q in panel_queries()} == set(boards())


# -- the live check -----------------------------------------------------------------------
def events_for(unit: str, indicator: str, n: int, at: datetime) -> list[dict[str, object]]:
    # Few events with larger values: the counts matter, not the number of requests.
    chunks = [n // 10] * 10
    chunks[-1] += n - sum(chunks)
    return [
        {
            "event_id": f"{unit}-{indicator}-{i}",
            "unit": unit,
            "indicator": indicator,
            "value": v,
            "occurred_at": at.isoformat(),
        }
        for i, v in enumerate(chunks)
        if v
    ]


@needs_prometheus
async def test_every_board_query_returns_data_from_the_running_services(
    database: str, kafka: KafkaBroker, topics: Topics, tmp_path: Path
) -> None:
    await build_world(database, starts_at=START, indicators=INDICATORS)
    await _earlier_campaign(database)
    token = await issue_token(database)
    receiver = Receiver()
    ports = {"tiendo-ingest": free_port(), "tiendo-aggregator": free_port()}
    ports["tiendo-notifier"] = free_port()
    common: ServiceKwargs = {
        "database_url": database,
        "kafka_bootstrap": kafka.bootstrap,
        **topics.kwargs(),
    }
    aggregator_app = create_aggregator(
        AggregatorSettings(
            **common,
            port=ports["tiendo-aggregator"],
            group_id=f"agg-{topics.events}",
            metrics_refresh_seconds=0.5,
        )
    )
    ingest_app = create_ingest(IngestSettings(**common, port=ports["tiendo-ingest"]))
    notifier_app = create_notifier(
        NotifierSettings(
            **common,
            port=ports["tiendo-notifier"],
            group_id=f"ntf-{topics.events}",
            webhook_url=f"http://127.0.0.1:{receiver.port}/hook",
            webhook_secret="test-webhook-secret",
            evaluate_every_seconds=1.0,
            delivery_poll_seconds=0.2,
        )
    )
    async with (
        serving(receiver.app, receiver.port),
        serving(aggregator_app, ports["tiendo-aggregator"]) as aggregator_url,
        serving(ingest_app, ports["tiendo-ingest"]) as ingest_url,
        serving(notifier_app, ports["tiendo-notifier"]),
        httpx.AsyncClient(base_url=ingest_url, timeout=30) as ingest,
        httpx.AsyncClient(base_url=aggregator_url, timeout=30) as aggregator,
    ):
        ingest.headers["Authorization"] = f"Bearer {token}"
        aggregator.headers.update(READER)
        with prometheus_server(tmp_path, ports) as prometheus_url:
            async with httpx.AsyncClient(base_url=prometheus_url, timeout=30) as prom:
                await _feed(ingest, aggregator, kafka, topics)
                await _check_prometheus(prom)
                await _level_one_matches_the_api(prom, aggregator)
                await _check_sql(database, aggregator)
    assert receiver.received >= 1


async def _earlier_campaign(dsn: str) -> None:
    """Last year's campaign on the same units, counted: what the unit board compares with."""
    earlier = START - timedelta(days=400)
    await build_world(dsn, starts_at=earlier, indicators=INDICATORS, campaign_id="c0")
    conn = await asyncpg.connect(dsn)
    try:
        await counting.apply_events(
            conn,
            [
                Event(
                    event_id=f"c0-{unit}-{indicator}",
                    unit=unit,
                    indicator=indicator,
                    kind=Kind.INCREMENT,
                    value=n // 2 + 1,
                    occurred_at=earlier + timedelta(days=2),
                )
                for unit, n in DONE.items()
                for indicator in INDICATORS
            ],
        )
    finally:
        await conn.close()


async def _feed(
    ingest: httpx.AsyncClient, aggregator: httpx.AsyncClient, kafka: KafkaBroker, topics: Topics
) -> None:
    async def ready() -> None:
        assert (await ingest.get("/readyz")).status_code == 200

    await eventually(ready)
    now = datetime.now(UTC) - timedelta(minutes=1)
    events = [
        e for unit, n in DONE.items() for ind in INDICATORS for e in events_for(unit, ind, n, now)
    ]
    r = await ingest.post("/v1/events", json={"events": events})
    assert r.status_code == 202, r.text
    # A client retry (duplicates), a refused event (errors by reason) …
    assert (await ingest.post("/v1/events", json={"events": events[:5]})).status_code == 202
    bad = {**events[0], "event_id": "bad-1", "indicator": "no_such_indicator"}
    assert (await ingest.post("/v1/events", json=bad)).status_code == 422
    # … and a record nobody can decode, which must end in the dead-letter topic.
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topics.events, b"\xff not a ProgressEvent")
    finally:
        await producer.stop()

    async def counted() -> None:
        r = await aggregator.get("/v1/campaigns/c1/progress/01")
        assert r.status_code == 200, r.text
        assert [i["value"] for i in r.json()["indicators"]] == [sum(DONE.values())] * 2

    await eventually(counted)


async def _check_prometheus(prom: httpx.AsyncClient) -> None:
    end = datetime.now(UTC)
    queries = [q for q in panel_queries() if q.kind == "prometheus"]
    rules = yaml.safe_load((PROMETHEUS_DIR / "rules" / "tiendo.yml").read_text())
    records = [r for group in rules["groups"] for r in group["rules"]]
    assert records
    checks = {
        f"{q.board} / {q.where}: {q.text}": interpolate(
            q.text, sql=False, start=end - timedelta(days=30), end=end
        )
        for q in queries
    }
    for rule in records:
        checks[f"recording rule {rule['record']}"] = rule["record"]
        checks[f"recording rule {rule['record']} (expr)"] = rule["expr"]
    for q in variable_queries():
        if q.kind == "prometheus":
            checks[f"{q.board} / {q.where}"] = q.text

    async def every_query_has_data() -> None:
        empty = []
        for label, expr in checks.items():
            if expr.startswith("label_values("):
                call = re.fullmatch(r"label_values\((.+), (\w+)\)", expr)
                assert call is not None, expr
                metric, label_name = call.groups()
                r = await prom.get(f"/api/v1/label/{label_name}/values", params={"match[]": metric})
                assert r.status_code == 200, f"{label}: {r.text}"
                values = r.json()["data"]
                if VARIABLES[label_name] not in values:
                    empty.append(f"{label} (no {VARIABLES[label_name]!r} in {values})")
                continue
            if not await prom_query(prom, expr):
                empty.append(label)
        assert not empty, "queries without data:\n  " + "\n  ".join(empty)

    # Up to a minute: scrapes every second, the per-unit snapshot every half second, the
    # notifier's clock every second, the rules every second.
    await eventually(every_query_has_data, timeout=90, every=2.0)


async def _level_one_matches_the_api(
    prom: httpx.AsyncClient, aggregator: httpx.AsyncClient
) -> None:
    """The overview's level-1 panels on a city's tree (one unit at level 1) are the city's
    own figures, as the progress API gives them (test_board_promql.py: a national tree)."""
    r = await aggregator.get("/v1/campaigns/c1/progress/01")
    assert r.status_code == 200, r.text
    api = {i["indicator"]: i for i in r.json()["indicators"]}
    end = datetime.now(UTC)

    def panel(title: str, index: int = 0) -> str:
        (found,) = [p for p in panels(boards()["tiendo-overview"]) if p["title"] == title]
        text = found["targets"][index]["expr"]
        return interpolate(text, sql=False, start=end, end=end)

    async def by_indicator(expr: str) -> dict[str, float]:
        return {
            x["metric"]["indicator"]: float(x["value"][1]) for x in await prom_query(prom, expr)
        }

    async def same() -> None:
        # (pace moves with the clock, the plan growing between the snapshot and the API)
        assert await by_indicator(panel("Tỷ lệ hoàn thành")) == pytest.approx(
            {i: a["pct"] for i, a in api.items()}
        )
        against = "Kết quả thực hiện so với kế hoạch"
        assert await by_indicator(panel(against, 0)) == {i: a["value"] for i, a in api.items()}
        assert await by_indicator(panel(against, 2)) == {i: a["target"] for i, a in api.items()}

    await eventually(same, timeout=30, every=1.0)


async def _check_sql(dsn: str, aggregator: httpx.AsyncClient) -> None:
    end = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        for q in variable_queries():
            if q.kind == "postgres":
                rows = await conn.fetch(interpolate(q.text, sql=True, start=end, end=end))
                values = [str(r["__value"]) for r in rows]
                assert VARIABLES[q.where.split()[-1]] in values, f"{q.board} / {q.where}: {values}"

        async def alert_exists() -> None:
            assert await conn.fetchval("SELECT count(*) FROM alerts WHERE unit = '002'")
            assert await conn.fetchval("SELECT count(*) FROM notifications")

        await eventually(alert_exists)
        for q in panel_queries():
            if q.kind != "postgres":
                continue
            sql = interpolate(q.text, sql=True, start=end - timedelta(days=30), end=end)
            try:
                rows = await conn.fetch(sql)
            except asyncpg.PostgresError as exc:
                pytest.fail(f"{q.board} / {q.where}: {exc}\n{sql}")
            assert rows, f"{q.board} / {q.where}: no rows\n{sql}"
        await _leaderboard_matches_the_api(conn, aggregator, end)
    finally:
        await conn.close()


async def _leaderboard_matches_the_api(
    conn: asyncpg.Connection, aggregator: httpx.AsyncClient, end: datetime
) -> None:
    """The SQL figures are tiendo/pace.py in SQL: they agree with the progress API."""
    board = boards()["tiendo-leaderboard"]
    table = next(p for p in panels(board) if p["title"] == "Xếp hạng đơn vị")
    sql = table["targets"][0]["rawSql"]
    for indicator in INDICATORS:
        VARIABLES["indicator"] = indicator
        try:
            rows = await conn.fetch(interpolate(sql, sql=True, start=end, end=end))
        finally:
            VARIABLES["indicator"] = "cccd_collected"
        assert [r["code"] for r in rows] == ["00004", "00007", "00010"]  # by pct
        assert [r["rank"] for r in rows] == [1, 2, 3]
        assert [r["must_explain"] for r in rows] == ["", "", "Phải giải trình"]
        for row in rows:
            r = await aggregator.get(f"/v1/campaigns/c1/progress/{row['code']}")
            api = next(i for i in r.json()["indicators"] if i["indicator"] == indicator)
            assert row["value"] == api["value"]
            assert row["target"] == api["target"]
            assert float(row["pct"]) == pytest.approx(api["pct"], abs=0.01)
            assert float(row["expected"]) == pytest.approx(api["expected"], abs=1)
            assert float(row["pace"]) == pytest.approx(api["pace"], abs=0.002)
            assert row["status"] == api["status"], row["code"]
    assert set(WARDS) == {"00004", "00007", "00010"}
