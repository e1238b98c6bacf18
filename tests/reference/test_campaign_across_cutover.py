"""A campaign that runs across Hà Nội's 1 July 2025 reorganisation, read through the API:
`as_of` before the cut-over answers on the old tree (its wards and districts, with their
targets), after it on the 126 communes (targets carried); the city's target is the same on
both sides."""

import asyncio
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from devtools.localstack import KafkaBroker
from services.aggregator import admin, cutover
from services.aggregator.app import create_app as create_aggregator
from services.aggregator.cli import import_file, import_tree_version
from services.check.run import check_round
from services.notifier import links
from services.notifier.app import create_app as create_notifier
from services.notifier.briefing.gather import gather
from services.notifier.briefing.words import number
from services.notifier.repository import explanations as explanation_sql
from services.notifier.settings import NotifierSettings
from tests.support.identities import ADMIN_SECRET as ADMIN
from tests.support.identities import READER
from tests.support.notifier import SmtpReceiver, behind_only_evaluator, notifier_settings
from tests.support.stack import Topics, aggregator_settings, eventually, running
from tiendo import counting
from tiendo.board import movement
from tiendo.board import repository as board
from tiendo.board.figures import judge
from tiendo.clock import ManualClock
from tiendo.database import create_pool
from tiendo.event import Event, Kind

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DATA = Path(str(resources.files("devtools.demo") / "data"))
START = datetime(2025, 6, 20, tzinfo=TZ)
DEADLINE = datetime(2025, 7, 20, tzinfo=TZ)
BEFORE = datetime(2025, 6, 28, tzinfo=TZ)
AFTER = datetime(2025, 7, 10, tzinfo=TZ)
# The communes the campaign judges after the cut-over: those its wards' targets were carried
# into (a ward that went whole into one). The other 29 are made only of parts of split wards,
# whose targets stay at the city (no shares declared): at 0 of 0 they are no children of it
# (`figures.is_judged`), as the leaderboard does not rank them.
JUDGED_COMMUNES = 97


@pytest.fixture
async def aggregator(
    database: str, kafka: KafkaBroker, topics: Topics
) -> AsyncIterator[httpx.AsyncClient]:
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    async with running(create_aggregator(settings)) as c:
        yield c


# The aggregator's loops that move a campaign onto its tree (`tree_check`, and the metric
# refresh, which moves a passed campaign before it judges) asleep after their first beat:
# the tests move the counters themselves, at the moments they choose.
ASLEEP = {"campaign_check_seconds": 3600, "metrics_refresh_seconds": 3600}


async def _beat(conn: asyncpg.Connection, at: datetime) -> None:
    """`tree_check`'s beat at `at`: the campaign's counters on the tree it reports on then
    (the aggregator's own first beats may have moved them already)."""
    async with conn.transaction():
        await cutover.replan_passed(conn, at)
    campaign = await board.campaign(conn, "span")
    assert campaign is not None
    assert campaign.counters_on_tree(at)


@dataclass(frozen=True)
class Span:
    """The campaign across July 2025 on the wards of June: their targets and what each
    reported before the cut-over."""

    wards: list[str]
    targets: dict[str, int]
    before: dict[str, int]


async def _codes_at(conn: asyncpg.Connection, level: int, moment: datetime) -> list[str]:
    """The official codes of a level's units in force at `moment`."""
    rows = await conn.fetch(
        "SELECT admin_code FROM units WHERE level = $1"
        " AND valid_from <= $2 AND $2 < coalesce(valid_to, 'infinity')",
        level,
        moment,
    )
    return [r["admin_code"] for r in rows]


def _reports(prefix: str, values: dict[str, int], at: datetime) -> list[Event]:
    """One increment of each unit's value (none of 0), at `at`."""
    return [
        Event(
            event_id=f"{prefix}-{code}",
            unit=code,
            indicator="cccd_collected",
            kind=Kind.INCREMENT,
            value=v,
            occurred_at=at,
        )
        for code, v in values.items()
        if v
    ]


async def _put_campaign(
    aggregator: httpx.AsyncClient, campaign_id: str, targets: dict[str, int]
) -> None:
    """The campaign across July 2025 with these targets, through the API: planned at the
    aggregator's clock, as an administrator's change is."""
    r = await aggregator.put(
        f"/v1/campaigns/{campaign_id}",
        json={
            "name": f"across July 2025 ({campaign_id})",
            "starts_at": START.isoformat(),
            "deadline": DEADLINE.isoformat(),
            "indicators": ["cccd_collected"],
        },
    )
    assert r.status_code == 200, r.text
    # official codes, read on the tree at the start: the 526 wards of June 2025
    r = await aggregator.put(
        f"/v1/campaigns/{campaign_id}/targets",
        json=[{"unit": w, "indicator": "cccd_collected", "target": t} for w, t in targets.items()],
    )
    assert r.status_code == 200, r.text


async def _span_campaign(aggregator: httpx.AsyncClient, database: str) -> Span:
    """Both trees of 2025 loaded, the campaign "span" with a target on every ward of June
    2025, and a report from most of them on 23 June."""
    aggregator.headers.update({"Authorization": f"Bearer {ADMIN}"})
    assert await import_file(aggregator, "units", DATA / "hanoi_units.csv", None, ADMIN) == []
    for day, units, crosswalk in (
        (date(2025, 1, 1), "hanoi_units_2025-01.csv", "hanoi_crosswalk_2025-01_inferred.csv"),
        (date(2025, 7, 1), "hanoi_units_2025.csv", "hanoi_crosswalk_2025.csv"),
    ):
        assert (
            await import_tree_version(aggregator, DATA / units, DATA / crosswalk, day, 90, ADMIN)
            == []
        )
    rng = random.Random(7)
    conn = await asyncpg.connect(database)
    try:
        wards = await _codes_at(conn, 3, START)
        assert len(wards) == 526
        targets = {w: rng.randrange(100, 900) for w in wards}
        await _put_campaign(aggregator, "span", targets)
        before = {w: rng.randrange(0, 50) for w in wards}
        await counting.apply_events(conn, _reports("b", before, START + timedelta(days=3)))
    finally:
        await conn.close()
    return Span(wards, targets, before)


async def test_as_of_reads_each_side_of_the_cut_over_on_its_own_tree(
    database: str, aggregator: httpx.AsyncClient
) -> None:
    span = await _span_campaign(aggregator, database)
    wards, targets, before = span.wards, span.targets, span.before
    rng = random.Random(8)
    aggregator.headers.update(READER)
    total = sum(targets.values())
    city_before = (
        await aggregator.get("/v1/campaigns/span/progress/01", params={"as_of": BEFORE.isoformat()})
    ).json()["indicators"][0]
    assert (city_before["value"], city_before["target"]) == (sum(before.values()), total)
    assert city_before["children_total"] == 30  # its districts, then
    june = (
        await aggregator.get(
            "/v1/campaigns/span/leaderboard",
            params={
                "level": 3,
                "indicator": "cccd_collected",
                "as_of": BEFORE.isoformat(),
                "limit": 1000,
            },
        )
    ).json()
    assert june["total"] == 526
    by_code = {row["unit"]["admin_code"]: row for row in june["rows"]}
    for w in rng.sample(wards, 40):
        assert (by_code[w]["value"], by_code[w]["target"]) == (before[w], targets[w]), w
    # the notifier's readers of a past moment (a briefing pack, a commitment's check) judge
    # it as the API does, by the plan of June's tree: the counters hold July's, where the
    # wards have none
    shown = {r["unit"]["code"]: (r["value"], r["target"], r["pct"]) for r in june["rows"]}
    conn = await asyncpg.connect(database)
    try:
        campaign = await board.campaign(conn, "span")
        assert campaign is not None
        assert not campaign.counters_on_tree(BEFORE)
        standings = await movement.leaderboard(
            conn, campaign, "cccd_collected", 3, BEFORE, previous_at=None, live=False
        )
        ranked = {s.verdict.unit: s.verdict.progress for s in standings}
        assert {u: (p.value, p.target, p.pct) for u, p in ranked.items()} == shown
        some = rng.sample(sorted(shown), 40)
        judged = await judge(conn, campaign, "cccd_collected", some, BEFORE, live=False)
        figures = {
            u: (v.progress.value, v.progress.target, v.progress.pct) for u, v in judged.items()
        }
        assert figures == {u: shown[u] for u in some}
        # the briefing pack of the last Sunday of June, asked in July: June's wards ranked,
        # the city on its target, its children charted June's 30 districts
        pack = await gather(
            conn,
            campaign,
            level=3,
            at=BEFORE,
            previous_at=BEFORE - timedelta(days=7),
            language="vi",
            bottom_n=5,
        )
        (section,) = pack.sections
        ranked_in_pack = {
            r.unit: (r.progress.value, r.progress.target, r.progress.pct) for r in section.ranking
        }
        assert ranked_in_pack == shown
        assert section.headline is not None
        assert (section.headline.unit, section.headline.progress.target) == ("01", total)
        districts = await conn.fetch(
            "SELECT code FROM units WHERE level = 2"
            " AND valid_from <= $1 AND $1 < coalesce(valid_to, 'infinity') ORDER BY code",
            BEFORE,
        )
        assert [s.unit for s in section.series] == ["01", *(r["code"] for r in districts)]
        assert len(districts) == 30
    finally:
        await conn.close()

    city_after = (
        await aggregator.get("/v1/campaigns/span/progress/01", params={"as_of": AFTER.isoformat()})
    ).json()["indicators"][0]
    # nothing dropped or doubled across the cut-over, figures and targets alike
    assert (city_after["value"], city_after["target"]) == (sum(before.values()), total)
    communes = (
        await aggregator.get(
            "/v1/campaigns/span/leaderboard",
            params={"level": 2, "indicator": "cccd_collected", "as_of": AFTER.isoformat()},
        )
    ).json()
    assert city_after["children_total"] == communes["total"] == JUDGED_COMMUNES
    assert all(row["unit"]["code"].endswith("@2025-07-01") for row in communes["rows"])


CUT = datetime(2025, 7, 1, tzinfo=TZ)


async def test_live_reads_the_new_tree_from_the_moment_it_is_in_force(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    """From the cut-over's first second, live is `as_of` now on the communes, before the
    campaign's counters are moved onto them (the aggregator's `tree_check` loop, here
    asleep for an hour, as it would be between two beats)."""
    clock = ManualClock(CUT - timedelta(minutes=5))
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False, **ASLEEP)
    async with running(create_aggregator(settings, clock)) as aggregator:
        span = await _span_campaign(aggregator, database)
        conn = await asyncpg.connect(database)
        try:
            # Created through the API on the last evening of June, by the aggregator's
            # clock: the counters are on the wards already, no loop's beat needed. (Planned
            # by the database's clock, today, they were on the deadline's tree of July.)
            campaign = await board.campaign(conn, "span")
            assert campaign is not None
            assert campaign.counters_on_tree(clock.now())
            communes = await _codes_at(conn, 2, CUT)
            assert len(communes) == 126
            # the first reports of July, from the communes, a few seconds after midnight
            rng = random.Random(9)
            after = {c: rng.randrange(1, 40) for c in rng.sample(communes, 60)}
            await counting.apply_events(conn, _reports("a", after, CUT + timedelta(seconds=10)))
            aggregator.headers.update(READER)

            async def live_and_now(path: str, **params: str | int) -> tuple[Any, Any]:
                live = await aggregator.get(path, params=params)
                then = await aggregator.get(
                    path, params={**params, "as_of": clock.now().isoformat()}
                )
                assert live.status_code == then.status_code == 200, (live.text, then.text)
                return live.json(), then.json()

            async def live_equals_history() -> None:
                live, then = await live_and_now("/v1/campaigns/span/progress/01")
                assert live == then
                city = live["indicators"][0]
                # June's reports and July's first, nothing dropped or doubled
                assert city["value"] == sum(span.before.values()) + sum(after.values())
                assert (city["target"], city["children_total"]) == (
                    sum(span.targets.values()),
                    JUDGED_COMMUNES,
                )
                board, board_then = await live_and_now(
                    "/v1/campaigns/span/leaderboard",
                    level=2,
                    indicator="cccd_collected",
                    limit=1000,
                )
                assert board == board_then
                # the communes with a target carried from the wards, none of the districts
                assert board["total"] > 90
                assert all(r["unit"]["code"].endswith("@2025-07-01") for r in board["rows"])
                for c in rng.sample(communes, 10):
                    live, then = await live_and_now(f"/v1/campaigns/span/progress/{c}")
                    assert live == then, c

            clock.set(CUT + timedelta(seconds=30))
            await live_equals_history()
            # the loop's next beat moves the counters; live reads them again, unchanged
            async with conn.transaction():
                assert await cutover.replan_passed(conn, clock.now()) == ["span"]
            await live_equals_history()
        finally:
            await conn.close()


async def test_the_notifier_waits_for_the_counters_to_reach_the_new_tree(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    """Between a cut-over and the move of the counters onto the new tree, the notifier
    judges nothing of the campaign (its wards' figures are not what live reads now) and
    closes nothing; after the move, the wards' alerts close and the communes' fire."""
    # The aggregator only loads the trees and the campaign. Its loops re-plan on its own
    # clock: on today's, they moved the campaign onto its deadline's tree whenever their
    # beat fell inside the window this test holds the counters in.
    loading = aggregator_settings(database, kafka.bootstrap, topics, consume=False, **ASLEEP)
    clock = ManualClock(CUT - timedelta(minutes=5))
    async with running(create_aggregator(loading, clock)) as aggregator:
        await _span_campaign(aggregator, database)
    pool = await create_pool(database, max_size=4)
    conn = await asyncpg.connect(database)
    try:
        evaluator = await behind_only_evaluator(conn, database, "span")

        async def alerts() -> list[tuple[Any, ...]]:
            rows = await conn.fetch(
                "SELECT id, unit, state, xmin::text, details FROM alerts ORDER BY id"
            )
            return [tuple(r.values()) for r in rows]

        async def units_firing() -> set[str]:
            """What the firing alerts are on: the city, the districts, the wards of June,
            the communes of July."""
            rows = await conn.fetch(
                "SELECT u.level, u.valid_from >= $1 AS new FROM alerts a"
                " JOIN units u ON u.code = a.unit WHERE a.state = 'firing'",
                CUT,
            )
            kinds = {(1, False): "city", (2, False): "districts", (3, False): "wards"}
            return {kinds.get((r["level"], r["new"]), "communes") for r in rows}

        before = CUT - timedelta(minutes=5)
        await _beat(conn, before)
        await evaluator.evaluate_at(pool, before)
        # most wards are far behind the month's plan a third of the way in
        assert await units_firing() == {"city", "districts", "wards"}
        stood = await alerts()
        assert len(stood) > 300, len(stood)
        # Past midnight, the counters not moved yet: nothing judged, nothing closed. (The
        # expected figures move with the clock: a pass that judged the wards would have
        # rewritten every one.)
        await evaluator.evaluate_at(pool, CUT + timedelta(seconds=30))
        assert await alerts() == stood
        # nor does `tiendo check` hold those counters against the new tree's history
        settings = NotifierSettings(database_url=database)
        assert (await check_round(conn, settings, CUT + timedelta(seconds=30))).disagreements == []
        async with conn.transaction():
            assert await cutover.replan_passed(conn, CUT + timedelta(seconds=40)) == ["span"]
        await evaluator.evaluate_at(pool, CUT + timedelta(seconds=45))
        assert await units_firing() == {"city", "communes"}
        assert (await check_round(conn, settings, CUT + timedelta(seconds=45))).disagreements == []
    finally:
        await conn.close()
        await pool.close()


async def test_a_campaign_whose_move_fails_stays_put_alone(
    database: str, kafka: KafkaBroker, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A campaign whose move onto the new tree raises (a bug of its data) stays where it
    is, and the other campaigns move: before, the first failure failed the loops that
    move them, and the board refresh behind it, for every campaign. The stuck one is read
    `as_of` now (live still equals history), left out of the boards' figures, exported
    as failing, and moved at the first beat after it is fixed."""
    clock = ManualClock(CUT - timedelta(minutes=5))
    # the loops awake: their beats are what is tested
    settings = aggregator_settings(
        database,
        kafka.bootstrap,
        topics,
        consume=False,
        campaign_check_seconds=0.2,
        metrics_refresh_seconds=0.2,
        move_retry_seconds=3600,
    )
    app = create_aggregator(settings, clock)
    async with running(app) as aggregator:
        span = await _span_campaign(aggregator, database)
        # a second campaign on the same wards (the same reports count for it)
        await _put_campaign(aggregator, "stuck", span.targets)
        real = admin.replan
        broken = True

        async def replan(conn: asyncpg.Connection, campaign_id: str, **kw: Any) -> None:
            if broken and campaign_id == "stuck":
                await conn.execute("SELECT 1 / 0")
            await real(conn, campaign_id, **kw)

        monkeypatch.setattr(admin, "replan", replan)
        conn = await asyncpg.connect(database)

        async def figures_of() -> dict[str, set[str]]:
            rows = await conn.fetch("SELECT campaign_id, unit FROM board_figures")
            out: dict[str, set[str]] = {}
            for row in rows:
                out.setdefault(row["campaign_id"], set()).add(row["unit"])
            return out

        def move_failing(metrics: str) -> float | None:
            prefix = 'tiendo_aggregator_campaign_move_failing{campaign="stuck"} '
            found = [ln[len(prefix) :] for ln in metrics.splitlines() if ln.startswith(prefix)]
            return float(found[0]) if found else None

        try:
            clock.set(CUT + timedelta(minutes=1))

            async def span_moved_alone() -> None:
                for campaign_id, moved in (("span", True), ("stuck", False)):
                    campaign = await board.campaign(conn, campaign_id)
                    assert campaign is not None
                    assert campaign.counters_on_tree(clock.now()) is moved, campaign_id
                assert move_failing((await aggregator.get("/metrics")).text) == 1.0
                # the boards: span on the communes, nothing of the stuck one
                shown = await figures_of()
                assert "stuck" not in shown
                assert any(u.endswith("@2025-07-01") for u in shown["span"])

            await eventually(span_moved_alone, timeout=60)
            aggregator.headers.update(READER)
            for campaign_id in ("span", "stuck"):
                path = f"/v1/campaigns/{campaign_id}/progress/01"
                live = await aggregator.get(path)
                then = await aggregator.get(path, params={"as_of": clock.now().isoformat()})
                assert live.status_code == then.status_code == 200, (live.text, then.text)
                assert live.json() == then.json(), campaign_id
                city = live.json()["indicators"][0]
                assert (city["value"], city["children_total"]) == (
                    sum(span.before.values()),
                    JUDGED_COMMUNES,
                )

            # fixed: neither loop tries again before `move_retry_seconds` (each try holds
            # the counters' lock until it fails), however many beats pass
            broken = False
            await asyncio.sleep(2)  # ten beats of each loop
            stuck = await board.campaign(conn, "stuck")
            assert stuck is not None
            assert not stuck.counters_on_tree(clock.now())
            clock.set(CUT + timedelta(minutes=1, hours=1))

            async def stuck_moved() -> None:
                campaign = await board.campaign(conn, "stuck")
                assert campaign is not None
                assert campaign.counters_on_tree(clock.now())
                # 0 once moved (gone at a whole pass that has nothing to move)
                assert move_failing((await aggregator.get("/metrics")).text) in (0.0, None)
                shown = await figures_of()
                assert shown.get("stuck") == shown["span"]

            await eventually(stuck_moved, timeout=60)
        finally:
            await conn.close()


def _shown(page: str) -> tuple[str, str]:
    """What a link page says of its alert's unit: its value and its target, as written."""
    found = re.search(r"Đã đạt / chỉ tiêu</span><b>([^<]*) / ([^<]*)</b>", page)
    assert found is not None, page
    return found[1], found[2]


async def test_the_link_page_reads_now_as_the_api_does(
    database: str, kafka: KafkaBroker, topics: Topics, smtp_receiver: SmtpReceiver
) -> None:
    """A chief who follows an alert's link between a cut-over and the move of the counters
    reads what the read API answers now (`as_of` now on the communes, with their plan),
    and what the page says once they are moved; before, the page read the wards' counters
    as now: a closed ward with its June target and value, a city without July's reports."""
    # the day before: `tree_check` sleeps until the next boundary by this clock, an
    # hour at most (`ASLEEP`), and must not wake to move the counters while the test reads
    clock = ManualClock(CUT - timedelta(days=1))
    loading = aggregator_settings(database, kafka.bootstrap, topics, consume=False, **ASLEEP)
    async with running(create_aggregator(loading, clock)) as aggregator:
        span = await _span_campaign(aggregator, database)
        aggregator.headers.update(READER)
        pool = await create_pool(database, max_size=4)
        conn = await asyncpg.connect(database)
        settings = notifier_settings(
            database, kafka, topics, smtp_receiver, public_url="http://127.0.0.1"
        )
        try:
            evaluator = await behind_only_evaluator(conn, database, "span")
            await _beat(conn, clock.now())
            await evaluator.evaluate_at(pool, clock.now())
            firing = await conn.fetch(
                "SELECT DISTINCT ON (u.level) a.id, a.unit, u.level FROM alerts a"
                " JOIN units u ON u.code = a.unit WHERE a.state = 'firing'"
                " ORDER BY u.level, a.unit"
            )
            assert [r["level"] for r in firing] == [1, 2, 3]  # the city, a district, a ward
            city, district, ward = (r["unit"] for r in firing)
            rng = random.Random(11)
            communes = await _codes_at(conn, 2, CUT)
            after = {c: rng.randrange(1, 40) for c in rng.sample(communes, 60)}
            await counting.apply_events(conn, _reports("a", after, CUT + timedelta(seconds=10)))
            clock.set(CUT + timedelta(seconds=30))

            async def pages(notifier: httpx.AsyncClient) -> dict[str, tuple[str, str]]:
                shown = {}
                for r in firing:
                    async with conn.transaction():
                        link = await explanation_sql.create_link(
                            conn,
                            "span",
                            city,
                            [r["id"]],
                            f"m/{r['id']}",
                            clock.now(),
                            timedelta(days=1),
                        )
                    token = links.sign(settings.link_key(), link.id, link.expires_at)
                    page = await notifier.get(f"/l/{token}")
                    assert page.status_code == 200, page.text
                    shown[r["unit"]] = _shown(page.text)
                return shown

            async def api(unit: str) -> tuple[str, str]:
                r = await aggregator.get(f"/v1/campaigns/span/progress/{unit}")
                assert r.status_code == 200, r.text
                figures = r.json()["indicators"][0]
                return number("vi", figures["value"]), number("vi", figures["target"])

            async with running(create_notifier(settings, clock=clock)) as notifier:
                waiting = await pages(notifier)
                # the city: June's reports and July's first, on the city's target
                assert waiting[city] == await api(city)
                assert waiting[city][0] == number(
                    "vi", sum(span.before.values()) + sum(after.values())
                )
                async with conn.transaction():
                    assert await cutover.replan_passed(conn, clock.now()) == ["span"]
                moved = await pages(notifier)
            assert moved == waiting
            # a closed district and ward: nothing of their own on the communes' tree
            assert waiting[district] == waiting[ward] == ("0", "0")
        finally:
            await conn.close()
            await pool.close()
