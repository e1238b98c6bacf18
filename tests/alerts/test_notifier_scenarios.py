"""contract §6 end to end on real Kafka, PostgreSQL and SMTP, on simulated time: a lagging ward's
chief gets one grouped message per channel; a repeat per interval; escalation to the chiefs
above; one resolved notice; silences; a flaky channel delivers exactly once."""

from datetime import timedelta

from tiendo_client.webhooks import WebhookVerifier

from tests.support.identities import ADMIN
from tests.support.notifier import (
    BEHIND_ONLY,
    SECRET,
    Harness,
    email_of,
    progress,
)
from tests.support.stack import eventually

GROUP_WAIT = timedelta(seconds=61)


async def _fall_behind(h: Harness, unit: str = "00010") -> None:
    """`unit` has done 50 of the expected 200 on both indicators; the others keep pace.

    Every unit with a target is judged, districts too: district 002, whose only ward lags,
    reports 250 of its own, so that it keeps pace for days (as do the others, ahead of the
    plan) and only the ward's chief is alerted."""
    now = h.clock.now()
    messages = [
        progress(u, value, at=now, indicator=i)
        for u, value in (("00004", 300), ("00007", 300), (unit, 50), ("002", 250))
        for i in ("cccd_collected", "eid_activated_l2")
    ]
    await h.feed.send(*messages)

    async def both_firing() -> None:
        firing = await h.alerts(state="firing", unit=unit)
        assert sorted(a["indicator"] for a in firing) == ["cccd_collected", "eid_activated_l2"]

    await eventually(both_firing)


async def _grouped_message_sent(h: Harness, unit: str = "00010") -> None:
    await h.advance(GROUP_WAIT)

    async def delivered() -> None:
        assert len(h.http.at(f"hook/{unit}")) == 1
        assert len(h.http.at(f"chat/{unit}")) == 1
        assert len(h.smtp.to(email_of(unit))) == 1

    await eventually(delivered)


async def test_a_lagging_ward_gets_one_grouped_email_webhook_and_chat_message(
    harness: Harness,
) -> None:
    h = harness
    await _fall_behind(h)
    # Inside group_wait nothing is sent, however often the clock evaluates.
    await h.app.state.evaluate_at()
    assert h.http.received == []
    await _grouped_message_sent(h)
    await h.settled()

    [hook] = h.http.at("hook/00010")
    body = hook.json()
    assert body["kind"] == "firing"
    assert body["recipient"]["unit"] == "00010"
    assert [(a["indicator"], a["rule"], a["value"], a["target"]) for a in body["firing"]] == [
        ("cccd_collected", "behind", 50, 1000),
        ("eid_activated_l2", "behind", 50, 1000),
    ]
    first = body["firing"][0]
    assert first["pace"] == 0.25
    assert first["required_daily_rate"] == 23.8  # 950 left over 40 days
    assert first["since"] == h.starts_at.replace(day=20).isoformat()
    assert first["unit_name"] == "Phường Hàng Buồm"
    # Standard Webhooks (issue 16), by the development fallback secret (no endpoint secret)
    assert WebhookVerifier([SECRET]).verify(hook.body, hook.headers) == body
    assert hook.delivery_id == body["delivery_id"] == hook.headers["webhook-id"]
    assert hook.delivery_id == "c1/00010/1/webhook"

    [mail] = h.smtp.to(email_of("00010"))
    text = mail.get_content()
    assert mail["Subject"] == "[tiendo] 2 cảnh báo tiến độ — Phường Hàng Buồm"
    assert "Thu nhận hồ sơ CCCD" in text
    assert "Kích hoạt tài khoản định danh mức 2" in text
    assert "Đã đạt 50/1.000 (5,0 %)" in text
    assert "Cần 23,8/ngày" not in text  # numbers are whole in Vietnamese style
    assert "Cần 24/ngày để về đích đúng hạn" in text
    assert "Từ 10:00 20/05/2023" in text
    assert mail["X-Tiendo-Delivery-Id"] == "c1/00010/1/email"

    [chat] = h.http.at("chat/00010")
    assert chat.delivery_id == "c1/00010/1/chat"
    assert "Phường Hàng Buồm: 2 cảnh báo" in chat.json()["title"] + chat.json()["message"]

    # Nobody else was told (the districts and the city keep pace); more evaluations send
    # nothing more.
    for _ in range(3):
        await h.advance(timedelta(minutes=10))
    await h.settled()
    assert {r.path for r in h.http.received} == {"hook/00010", "chat/00010"}
    assert len(h.http.received) == 2
    assert len(h.smtp.messages) == 1
    log = await h.log(recipient="00010")
    assert sorted((n["channel"], n["kind"], n["status"], n["attempts"]) for n in log) == [
        ("chat", "firing", "delivered", 1),
        ("email", "firing", "delivered", 1),
        ("webhook", "firing", "delivered", 1),
    ]
    assert log[0]["address"].startswith(("json://***", "chief-", "http://"))


async def test_a_ward_that_stays_behind_gets_one_repeat_per_interval(harness: Harness) -> None:
    h = harness
    await _fall_behind(h)
    await _grouped_message_sent(h)
    await h.advance(timedelta(hours=23))
    await h.settled()
    assert len(h.http.at("hook/00010")) == 1
    await h.advance(timedelta(hours=1))

    async def repeated() -> None:
        kinds = [r.json()["kind"] for r in h.http.at("hook/00010")]
        assert kinds == ["firing", "repeat"]
        assert len(h.smtp.to(email_of("00010"))) == 2

    await eventually(repeated)
    repeat = h.http.at("hook/00010")[1].json()
    assert repeat["delivery_id"] == "c1/00010/1.r1/webhook"
    assert len(repeat["firing"]) == 2
    for _ in range(3):
        await h.advance(timedelta(hours=2))
    await h.settled()
    assert len(h.http.at("hook/00010")) == 2
    [mail] = [m for m in h.smtp.to(email_of("00010")) if "Nhắc lại" in str(m["Subject"])]
    assert "vẫn còn hiệu lực" in mail.get_content()


async def test_escalation_reaches_the_parent_chief_then_one_level_up(harness: Harness) -> None:
    h = harness
    # repeats off, to count escalations only (a PUT replaces the whole override)
    await h.policy({**BEHIND_ONLY, "repeat_interval_seconds": 0})
    await _fall_behind(h)
    await _grouped_message_sent(h)
    await h.advance(timedelta(hours=47))
    await h.settled()
    assert h.http.at("hook/002") == []
    await h.advance(timedelta(hours=1) + GROUP_WAIT)

    async def parent_told() -> None:
        hooks = h.http.at("hook/002")
        assert len(hooks) == 1
        body = hooks[0].json()
        assert body["recipient"]["unit"] == "002"
        assert [(a["unit"], a["escalation_level"]) for a in body["firing"]] == [
            ("00010", 1),
            ("00010", 1),
        ]
        assert len(h.smtp.to(email_of("002"))) == 1

    await eventually(parent_told)
    [mail] = h.smtp.to(email_of("002"))
    assert "chuyển lên cấp trên (mức 1)" in mail.get_content()
    assert h.http.at("hook/01") == []
    await h.advance(timedelta(hours=48) + GROUP_WAIT)

    async def city_told() -> None:
        hooks = h.http.at("hook/01")
        assert len(hooks) == 1
        assert {a["escalation_level"] for a in hooks[0].json()["firing"]} == {2}

    await eventually(city_told)
    # The ward's own chief heard once (no repeats configured), the parent once.
    await h.settled()
    assert len(h.http.at("hook/00010")) == 1
    assert len(h.http.at("hook/002")) == 1
    alerts = await h.alerts(state="firing", unit="00010")
    assert {a["escalation_level"] for a in alerts} == {2}


async def test_a_parent_keeps_hearing_of_an_escalated_alert_that_a_newer_one_outranks_below(
    harness: Harness,
) -> None:
    """`stale` outranks `behind` in a chief's messages. The ward's chief, told of both,
    hears of `stale`; the district's chief, told of the escalated `behind` and not of
    `stale` (not escalated yet), still hears of `behind` at each repeat."""
    h = harness
    await h.policy({**BEHIND_ONLY, "stale": {"enabled": True, "for_seconds": 0}})
    await _fall_behind(h)
    await _grouped_message_sent(h)

    async def report(*units: str) -> None:
        # the same figures again (a snapshot each): still behind, but not silent
        now = h.clock.now()
        values = {"00004": 300, "00007": 300, "00010": 50, "002": 250}
        await h.feed.send(
            *(
                progress(u, values[u], at=now, indicator=i)
                for u in units
                for i in ("cccd_collected", "eid_activated_l2")
            )
        )

    everyone = ("00004", "00007", "00010", "002")
    for _ in range(8):  # every 6 hours for 48: the ward's `behind` escalates
        await h.advance(timedelta(hours=6))
        await report(*everyone)
    await h.advance(GROUP_WAIT)
    await eventually(lambda: _told_of(h, "hook/002", "behind"))
    # The ward falls silent (the others go on reporting): 12 hours on it is `stale`, told
    # to its own chief; the district's repeat, a day after it was told, still lists the
    # ward's `behind`.
    for _ in range(5):
        await h.advance(timedelta(hours=6))
        await report("00004", "00007", "002")
    await h.advance(GROUP_WAIT)
    stale = await h.alerts(state="firing", unit="00010", rule="stale")
    assert len(stale) == 2
    assert all(a["escalation_level"] == 0 for a in stale)
    await h.settled()
    ward = [m.json() for m in h.http.at("hook/00010")]
    assert {a["rule"] for a in ward[-1]["firing"]} == {"stale"}
    district = [m.json() for m in h.http.at("hook/002")]
    assert [m["kind"] for m in district] == ["firing", "repeat"]
    assert [(a["unit"], a["rule"]) for a in district[-1]["firing"]] == [
        ("00010", "behind"),
        ("00010", "behind"),
    ]


async def _told_of(h: Harness, path: str, rule: str) -> None:
    bodies = [m.json() for m in h.http.at(path)]
    assert any(a["rule"] == rule for b in bodies for a in b["firing"]), bodies


async def test_a_ward_that_recovers_gets_one_resolved_notice(harness: Harness) -> None:
    h = harness
    await _fall_behind(h)
    await _grouped_message_sent(h)
    now = h.clock.now()
    await h.feed.send(
        *(
            progress("00010", 260, at=now, indicator=i)
            for i in ("cccd_collected", "eid_activated_l2")
        )
    )

    async def resolved() -> None:
        assert await h.alerts(state="firing", unit="00010") == []

    await eventually(resolved)
    await h.advance(GROUP_WAIT)

    async def told() -> None:
        kinds = [r.json()["kind"] for r in h.http.at("hook/00010")]
        assert kinds == ["firing", "resolved"]

    await eventually(told)
    notice = h.http.at("hook/00010")[1].json()
    assert notice["firing"] == []
    assert sorted(a["indicator"] for a in notice["resolved"]) == [
        "cccd_collected",
        "eid_activated_l2",
    ]
    for _ in range(3):
        await h.advance(timedelta(days=1))
    await h.settled()
    assert len(h.http.at("hook/00010")) == 2
    assert [str(m["Subject"]) for m in h.smtp.to(email_of("00010"))][1].startswith(
        "[tiendo] Đã hết cảnh báo"
    )


async def test_a_silence_stops_notifications_but_alerts_still_show(harness: Harness) -> None:
    h = harness
    # The whole district 002 (ward 00010 is in it) is muted for two days.
    r = await h.api.post(
        "/v1/silences",
        headers=ADMIN,
        json={
            "campaign": "c1",
            "unit": "002",
            "ends_at": (h.clock.now() + timedelta(days=2)).isoformat(),
            "comment": "known: staff on training",
            "created_by": "ops",
        },
    )
    assert r.status_code == 201, r.text
    silence = r.json()
    assert (
        await h.api.post("/v1/silences", json={"unit": "002", "ends_at": silence["ends_at"]})
    ).status_code == 401
    await _fall_behind(h)
    await h.advance(GROUP_WAIT)
    await h.advance(timedelta(hours=25))  # past a repeat slot too
    await h.settled()
    assert h.http.received == []
    assert h.smtp.messages == []
    firing = await h.alerts(state="firing", unit="00010")
    assert len(firing) == 2
    assert all(a["silenced_by"] == [silence["id"]] for a in firing)
    listed = (await h.api.get("/v1/silences", params={"active": "true"}, headers=ADMIN)).json()
    assert [s["id"] for s in listed] == [silence["id"]]

    # Ending the silence: the chief hears of what still fires, once.
    assert (await h.api.delete(f"/v1/silences/{silence['id']}", headers=ADMIN)).status_code == 204
    await h.advance(timedelta(minutes=1))

    async def told() -> None:
        hooks = h.http.at("hook/00010")
        assert len(hooks) == 1
        assert len(hooks[0].json()["firing"]) == 2

    await eventually(told)
    assert (await h.api.get("/v1/silences", params={"active": "true"}, headers=ADMIN)).json() == []


async def test_a_channel_that_fails_three_times_then_recovers_delivers_exactly_once(
    harness: Harness,
) -> None:
    h = harness
    h.http.fail_next = {"hook/00010": 3}
    await _fall_behind(h)
    await h.advance(GROUP_WAIT)
    await h.settled()
    assert len(h.http.at("hook/00010")) == 4  # 3 refused, then accepted
    assert len(h.http.distinct("hook/00010")) == 1
    assert len(h.http.at("chat/00010")) == 1
    log = {n["channel"]: n for n in await h.log(recipient="00010")}
    assert {c: n["status"] for c, n in log.items()} == {
        "webhook": "delivered",
        "chat": "delivered",
        "email": "delivered",
    }
    assert log["webhook"]["attempts"] == 4
    attempts = log["webhook"]["attempt_log"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert [a["ok"] for a in attempts][-1] is True
    assert all(a["ok"] is False and a["error"] for a in attempts[:-1])
    assert log["email"]["attempts"] == 1
    metrics = (await h.api.get("/metrics")).text
    delivered = 'tiendo_notifier_notifications_total{channel="webhook",result="delivered"} 1.0'
    assert delivered in metrics


async def test_a_channel_that_never_recovers_is_marked_failed_and_counted(harness: Harness) -> None:
    h = harness
    h.http.fail_next = {"hook/": 10_000}
    await _fall_behind(h)
    await h.advance(GROUP_WAIT)
    await h.settled()
    log = {n["channel"]: n for n in await h.log(recipient="00010")}
    assert log["webhook"]["status"] == "failed"
    assert log["webhook"]["attempts"] == 8
    assert log["webhook"]["last_error"] == "HTTP 503"
    assert log["email"]["status"] == "delivered"
    metrics = (await h.api.get("/metrics")).text
    assert 'tiendo_notifier_notifications_total{channel="webhook",result="failed"} 1.0' in metrics


async def test_each_chief_gets_one_digest_per_scheduled_time(harness: Harness) -> None:
    h = harness
    await h.policy({**BEHIND_ONLY, "digest_times": ["07:00", "17:00"]})
    await _fall_behind(h)
    await _grouped_message_sent(h)
    # 10:01 local now; the next digest is at 17:00.
    await h.advance(timedelta(hours=6, minutes=58))
    await h.settled()
    assert all(not str(m["Subject"]).startswith("[tiendo] Tổng hợp") for m in h.smtp.messages)
    await h.advance(timedelta(minutes=2))

    async def digests() -> None:
        for ward in ("00004", "00007", "00010"):
            subjects = [str(m["Subject"]) for m in h.smtp.to(email_of(ward))]
            assert sum(s.startswith("[tiendo] Tổng hợp tiến độ") for s in subjects) == 1

    await eventually(digests)
    for _ in range(3):
        await h.advance(timedelta(minutes=10))
    await h.settled()
    await digests()
    [digest] = [
        m for m in h.smtp.to(email_of("00010")) if str(m["Subject"]).startswith("[tiendo] Tổng")
    ]
    text = digest.get_content()
    assert "Thu nhận hồ sơ CCCD: 50/1.000" in text
    assert "Cảnh báo đang hiệu lực: 2." in text
    hooks = [r.json() for r in h.http.at("hook/00004") if r.json()["kind"] == "digest"]
    assert len(hooks) == 1
    # 300 of the 200 expected; the run rate comes from the board's history (300 in the
    # last week, 42.9 a day against the 17.5 needed): on track, as the board says
    assert hooks[0]["indicators"][0]["status"] == "on_track"
