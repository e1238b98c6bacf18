"""Every figure, rank and alert derives from one state (issue 11): the notifier judges
every targeted key on the board's figures, silent units included; `bottom_rank` is the
leaderboard as of the briefing; admin changes reach it within seconds; a campaign's end
closes its alerts with a final notice; `tiendo check` finds nothing to disagree on."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from devtools.localstack import KafkaBroker
from services.aggregator import admin
from services.aggregator.admin import CampaignIn, MilestoneIn, TargetIn
from services.aggregator.progress import leaderboard
from services.check.run import check_round
from services.notifier.app import create_app
from tests.support.identities import ADMIN
from tests.support.notifier import (
    BEHIND_ONLY,
    Harness,
    HttpReceiver,
    SmtpReceiver,
    email_of,
    notifier_settings,
    progress,
    tree_with_contacts,
)
from tests.support.stack import Topics, eventually, running
from tests.support.world import WARDS, build_world
from tiendo.board import repository as board
from tiendo.clock import ManualClock
from tiendo.counting import Key

GROUP_WAIT = timedelta(seconds=61)
UNITS = ("01", "001", "002", *WARDS)


async def _firing(h: Harness, rule: str) -> set[tuple[str, str]]:
    return {(a["unit"], a["indicator"]) for a in await h.alerts(state="firing", rule=rule)}


async def _check(h: Harness) -> list[Any]:
    conn = await asyncpg.connect(h.database)
    try:
        result = await check_round(conn, h.app.state.settings, h.clock.now())
    finally:
        await conn.close()
    return [str(d) for d in result.disagreements]


async def test_units_that_never_report_are_judged_like_any_other(harness: Harness) -> None:
    h = harness
    # Day 10 of 50 and nobody has reported: every unit with a target is behind on both
    # indicators, the districts and the city too (their targets are their wards' sums).
    await h.advance(timedelta(minutes=1))
    everyone = {(u, i) for u in UNITS for i in ("cccd_collected", "eid_activated_l2")}
    assert await _firing(h, "behind") == everyone
    assert await _check(h) == []


async def test_a_unit_without_a_target_is_never_judged(harness: Harness) -> None:
    h = harness
    conn = await asyncpg.connect(h.database)
    try:
        async with conn.transaction():
            await admin.upsert_targets(
                conn,
                "c1",
                [TargetIn(unit="00010", indicator=i, target=0) for i in ("cccd_collected",)],
                "test",
            )
    finally:
        await conn.close()
    await h.advance(timedelta(minutes=1))
    firing = await _firing(h, "behind")
    assert ("00010", "cccd_collected") not in firing
    assert ("00010", "eid_activated_l2") in firing
    assert await _check(h) == []


async def test_behind_follows_the_campaigns_milestones_as_the_board_does(harness: Harness) -> None:
    h = harness
    conn = await asyncpg.connect(h.database)
    try:
        row = await conn.fetchrow("SELECT * FROM campaigns WHERE id = 'c1'")
        assert row is not None
        async with conn.transaction():
            # a slow start: 10 % by day 25, the rest after
            await admin.upsert_campaign(
                conn,
                "c1",
                CampaignIn(
                    name=row["name"],
                    starts_at=row["starts_at"],
                    deadline=row["deadline"],
                    indicators=list(row["indicators"]),
                    milestones=[
                        MilestoneIn(at=row["starts_at"] + timedelta(days=25), fraction=0.1)
                    ],
                ),
                "test",
            )
    finally:
        await conn.close()
    now = h.clock.now()
    # 50 by day 10: a quarter of the straight line (200), but 1.25 × the milestone plan (40)
    await h.feed.send(
        *(progress(u, 50, at=now, indicator=i) for u in WARDS for i in ("cccd_collected",))
    )
    await h.advance(timedelta(minutes=1))
    assert not any(u in WARDS and i == "cccd_collected" for u, i in await _firing(h, "behind"))
    r = await h.api.get("/v1/alerts", params={"unit": "00010", "state": "firing"}, headers=ADMIN)
    assert all(a["indicator"] != "cccd_collected" for a in r.json())
    assert await _check(h) == []


async def test_bottom_rank_is_the_leaderboard_as_of_the_briefing(harness: Harness) -> None:
    h = harness
    # Saturday 20 May 2023; the briefing was Monday 15 May, 08:00 local (01:00 UTC).
    briefing = datetime(2023, 5, 15, 1, 0, tzinfo=UTC)
    before, after = briefing - timedelta(days=1), briefing + timedelta(days=4)
    await h.feed.send(
        progress("00004", 100, at=before),
        progress("00007", 20, at=before),
        progress("00010", 60, at=before),
        # after the briefing 00007 leaps ahead: the live board ranks it first, which must
        # not change who was last at the briefing
        progress("00007", 500, at=after),
    )
    # A second campaign with targets on two wards only: its ranking knows only those (of
    # 600, which 00007's 500 after the briefing does not reach: a unit done is no laggard,
    # and its rank alert closes, docs/alerts.md).
    conn = await asyncpg.connect(h.database)
    try:
        async with conn.transaction():
            await admin.upsert_campaign(
                conn,
                "c2",
                CampaignIn(
                    name="second",
                    starts_at=h.starts_at,
                    deadline=h.starts_at + timedelta(days=50),
                    indicators=["cccd_collected"],
                ),
                "test",
            )
            await admin.upsert_targets(
                conn,
                "c2",
                [TargetIn(unit=u, indicator="cccd_collected", target=600) for u in WARDS[:2]],
                "test",
            )
        rank_policy = {
            **BEHIND_ONLY,
            "behind": {"enabled": False},
            "bottom_rank": {"enabled": True, "n": 2, "level": 3, "for_seconds": 0},
        }
        for campaign_id in ("c1", "c2"):
            r = await h.api.put(
                f"/v1/campaigns/{campaign_id}/alert-policy",
                json=rank_policy,
                headers=ADMIN,
            )
            assert r.status_code == 200, r.text
        await h.advance(timedelta(minutes=1))
        alerts = await h.alerts(state="firing", rule="bottom_rank")
        got = {(a["campaign_id"], a["unit"], a["indicator"], a["details"]["rank"]) for a in alerts}
        # the API's leaderboard as of the briefing, over the units with a target
        c1 = await board.campaign(conn, "c1")
        c2 = await board.campaign(conn, "c2")
        assert c1 is not None
        assert c2 is not None
        expected = set()
        for campaign in (c1, c2):
            for indicator in campaign.indicators:
                rows = await leaderboard(conn, campaign, indicator, 3, briefing, live=False)
                expected |= {
                    (campaign.id, r.unit.code, indicator, r.rank)
                    for r in rows[-2:]
                    if r.pct is None or r.pct < 100
                }
        assert got == expected
        assert ("c1", "00007", "cccd_collected", 3) in got  # last then, first now
        assert ("c1", "00010", "cccd_collected", 2) in got
        assert {(c, u) for c, u, _, _ in got if c == "c2"} == {("c2", "00004"), ("c2", "00007")}
        assert await _check(h) == []

        # A notifier that starts afresh (or late) finds the same ranking.
        await conn.execute("DELETE FROM briefing_ranks")
        await h.advance(timedelta(minutes=1))
        again = await h.alerts(state="firing", rule="bottom_rank")
        assert {
            (a["campaign_id"], a["unit"], a["indicator"], a["details"]["rank"]) for a in again
        } == got
    finally:
        await conn.close()


async def _ward_falls_behind(h: Harness) -> None:
    """Ward 00010 has done 50 of the expected 200 on both indicators (the others keep
    pace), and its chief has been told."""
    now = h.clock.now()
    await h.feed.send(
        *(
            progress(u, v, at=now, indicator=i)
            for u, v in (("00004", 300), ("00007", 300), ("00010", 50), ("002", 250))
            for i in ("cccd_collected", "eid_activated_l2")
        )
    )
    await h.advance(GROUP_WAIT)
    await eventually(lambda: _told(h, "hook/00010", 1))


async def test_a_campaign_end_closes_every_alert_with_a_final_notice(harness: Harness) -> None:
    h = harness
    await _ward_falls_behind(h)
    # the deadline passes: one final notice, achieved or by how much not
    deadline = h.starts_at + timedelta(days=50)
    h.clock.set(deadline + timedelta(minutes=1))
    await h.app.state.evaluate_at()
    assert await h.alerts(state="firing") == []
    assert await h.alerts(state="pending") == []
    await h.advance(GROUP_WAIT)
    await eventually(lambda: _told(h, "hook/00010", 2))
    final = h.http.at("hook/00010")[-1].json()
    assert final["kind"] == "resolved"
    assert final["campaign_ended"] is True
    lines = {(a["indicator"], a["achieved"], a["shortfall"]) for a in final["resolved"]}
    assert lines == {("cccd_collected", False, 950), ("eid_activated_l2", False, 950)}
    [mail] = [m for m in h.smtp.to(email_of("00010")) if "Kết thúc đợt" in str(m["Subject"])]
    assert "còn thiếu 950" in mail.get_content()
    # nothing repeats or escalates after it, however long the notifier runs
    for _ in range(4):
        await h.advance(timedelta(days=1))
    await h.settled()
    assert len(h.http.at("hook/00010")) == 2
    assert h.http.at("hook/002") == []
    assert h.http.at("hook/01") == []
    assert await _check(h) == []


async def test_a_units_own_deadline_closes_its_alerts_with_the_final_word(
    harness: Harness,
) -> None:
    """A target may end before the campaign. Past it nothing holds for that unit (the board
    marks it over), and its chief hears the final word, by how much the target was missed,
    not "back on track"; its other indicator, due at the campaign's end, still fires."""
    h = harness
    now = h.clock.now()
    own_deadline = now + timedelta(days=2)
    conn = await asyncpg.connect(h.database)
    try:
        target = TargetIn(
            unit="00010", indicator="cccd_collected", target=1000, deadline=own_deadline
        )
        async with conn.transaction():
            await admin.upsert_targets(conn, "c1", [target], "test")
    finally:
        await conn.close()
    await _ward_falls_behind(h)
    first = h.http.at("hook/00010")[0].json()
    assert {a["indicator"] for a in first["firing"]} == {"cccd_collected", "eid_activated_l2"}

    h.clock.set(own_deadline + timedelta(minutes=1))
    await h.app.state.evaluate_at()
    firing = await h.alerts(state="firing", unit="00010")
    assert [a["indicator"] for a in firing] == ["eid_activated_l2"]
    await h.advance(GROUP_WAIT)

    async def closed() -> dict[str, Any]:
        told = [m.json() for m in h.http.at("hook/00010")[1:]]
        closings: list[dict[str, Any]] = [a for m in told for a in m["resolved"]]
        assert len(closings) == 1, told
        return closings[0]

    closing = await eventually(closed)
    assert closing["indicator"] == "cccd_collected"
    assert (closing["achieved"], closing["shortfall"]) == (False, 950)
    assert (closing["deadline_passed"], closing["campaign_ended"]) == (True, False)
    mails = [m.get_content() for m in h.smtp.to(email_of("00010"))[1:]]
    assert any("Kết quả cuối (đã qua hạn chót)" in m and "còn thiếu 950" in m for m in mails)
    assert not any("Đã trở lại đúng tiến độ" in m for m in mails)


async def _told(h: Harness, path: str, n: int) -> None:
    assert len(h.http.at(path)) == n


async def test_an_admin_change_reaches_the_notifier_within_seconds(
    database: str,
    kafka: KafkaBroker,
    topics: Topics,
    http_receiver: HttpReceiver,
    smtp_receiver: SmtpReceiver,
) -> None:
    starts_at = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)
    clock = ManualClock(starts_at + timedelta(days=10))
    await build_world(database, starts_at=starts_at, units=tree_with_contacts(http_receiver))
    conn = await asyncpg.connect(database)
    await conn.execute(
        "INSERT INTO alert_policies (campaign_id, config) VALUES ('c2', $1)",
        json.dumps(BEHIND_ONLY),
    )
    # a full pass only once an hour: what brings the change in is the audit log watch
    settings = notifier_settings(
        database, kafka, topics, smtp_receiver, evaluate_every_seconds=3600
    )
    app = create_app(settings, clock=clock)
    try:
        async with running(app) as api:
            api.headers.update(ADMIN)
            await asyncio.sleep(1)
            async with conn.transaction():
                await admin.upsert_campaign(
                    conn,
                    "c2",
                    CampaignIn(
                        name="created later",
                        starts_at=starts_at,
                        deadline=starts_at + timedelta(days=50),
                        indicators=["cccd_collected"],
                    ),
                    "test",
                )
                await admin.upsert_targets(
                    conn,
                    "c2",
                    [TargetIn(unit="00004", indicator="cccd_collected", target=100)],
                    "test",
                )
            started = asyncio.get_running_loop().time()

            async def judged() -> None:
                r = await api.get("/v1/alerts", params={"campaign": "c2", "state": "firing"})
                assert {a["unit"] for a in r.json()} == {"00004", "001", "01"}

            await eventually(judged, timeout=10, every=0.1)
            assert asyncio.get_running_loop().time() - started < 5
    finally:
        await conn.close()


async def test_a_resolution_waits_for_the_planner_holding_its_group(
    database: str, http_receiver: HttpReceiver, smtp_receiver: SmtpReceiver
) -> None:
    """The planner tells a chief an alert fires, under the group's lock; a resolution that
    lands meanwhile must wait for it, or the chief would never hear that it cleared."""
    from tests.support.notifier import Feed, behind_only_evaluator
    from tiendo.database import create_pool

    starts_at = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)
    t0 = starts_at + timedelta(days=10)
    await build_world(database, starts_at=starts_at, units=tree_with_contacts(http_receiver))
    pool = await create_pool(database, max_size=4)
    planner = await asyncpg.connect(database)
    try:
        evaluator = await behind_only_evaluator(planner, database, "c1")
        feed = Feed(database)
        await feed.send(*(progress(u, v, at=t0) for u, v in (("00004", 300), ("00007", 300))))
        await feed.send(progress("00010", 50, at=t0), progress("002", 250, at=t0))
        await evaluator.evaluate_at(pool, t0)
        alert_id = await planner.fetchval(
            "SELECT id FROM alerts WHERE unit = '00010' AND state = 'firing'"
        )
        group_id = await planner.fetchval(
            "SELECT group_id FROM alert_group_members WHERE alert_id = $1", alert_id
        )
        # The planner has read the group (the alert fires, its chief not told yet) ...
        tx = planner.transaction()
        await tx.start()
        await planner.execute("SELECT 1 FROM alert_groups WHERE id = $1 FOR UPDATE", group_id)
        # ... when the ward recovers and an evaluation resolves the alert.
        await feed.send(progress("00010", 400, at=t0 + timedelta(minutes=1)))
        resolving = asyncio.create_task(
            evaluator.evaluate_at(
                pool, t0 + timedelta(minutes=1), [Key("c1", "00010", "cccd_collected")]
            )
        )
        await asyncio.sleep(1.0)
        assert not resolving.done(), "the resolution did not wait for the group's lock"
        # the planner queues the firing message and marks the chief told, then commits
        await planner.execute(
            "UPDATE alert_group_members SET notified = true WHERE group_id = $1", group_id
        )
        await tx.commit()
        await asyncio.wait_for(resolving, timeout=10)
        member = await planner.fetchrow(
            "SELECT state, notified FROM alert_group_members WHERE alert_id = $1", alert_id
        )
        # the resolution is owed to the chief who was told it fired
        assert member is not None
        assert (member["state"], member["notified"]) == ("resolved", True)
    finally:
        await planner.close()
        await pool.close()
