"""Which silences are active is one rule (docs/alerts.md, "Silences"): begun, and neither
at their end nor ended early (DELETE). `GET /v1/silences?active=true` lists exactly those,
each marked `"active": true`, and evaluation mutes with exactly those; a silence that has
not started yet is not listed as active. A silence already over when it is made would
mute nothing: it is refused, nothing stored or audited."""

from datetime import timedelta
from typing import Any

import asyncpg

from services.notifier.repository import reference as reference_sql
from tests.support.identities import ADMIN
from tests.support.notifier import Harness


async def _silence(h: Harness, **moments: Any) -> int:
    body = {"campaign": "c1", **{k: v.isoformat() for k, v in moments.items()}}
    r = await h.api.post("/v1/silences", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    found: int = r.json()["id"]
    return found


async def test_the_active_list_is_what_evaluation_mutes_with(harness: Harness) -> None:
    h = harness
    t0 = h.clock.now()
    hour = timedelta(hours=1)
    drawn = {
        "future": await _silence(h, starts_at=t0 + 24 * hour, ends_at=t0 + 48 * hour),
        "current": await _silence(h, ends_at=t0 + 24 * hour),
        "begun earlier": await _silence(h, starts_at=t0 - 24 * hour, ends_at=t0 + 24 * hour),
        "ended": await _silence(h, ends_at=t0 + hour),
        "expired": await _silence(h, ends_at=t0 + 24 * hour),
        # ended early at a moment still to come (a replica whose clock runs ahead): it
        # mutes until then, as `groups.silence_of` reads `expired_at`
        "expiring": await _silence(h, ends_at=t0 + 24 * hour),
    }
    ended = await h.api.delete(f"/v1/silences/{drawn['expired']}", headers=ADMIN)
    assert ended.status_code == 204, ended.text
    h.clock.advance(2 * hour)
    now = h.clock.now()
    conn = await asyncpg.connect(h.database)
    try:
        await conn.execute(
            "UPDATE silences SET expired_at = $2 WHERE id = $1", drawn["expiring"], now + hour
        )
        evaluated = {r["id"] for r in await reference_sql.active_silences(conn, now)}
    finally:
        await conn.close()

    every = await h.api.get("/v1/silences", headers=ADMIN)
    active = await h.api.get("/v1/silences", params={"active": "true"}, headers=ADMIN)
    assert every.status_code == active.status_code == 200
    marked = {s["id"] for s in every.json() if s["active"]}
    listed = {s["id"]: s["active"] for s in active.json()}
    wanted = {drawn[k] for k in ("current", "begun earlier", "expiring")}
    assert marked == wanted
    assert listed == dict.fromkeys(wanted, True)
    assert evaluated == wanted
    assert {s["id"] for s in every.json()} == set(drawn.values())


async def test_a_silence_already_over_is_refused(harness: Harness) -> None:
    h = harness
    now = h.clock.now()
    for moments in (
        {"starts_at": "2020-01-01T00:00:00Z", "ends_at": "2021-01-01T00:00:00Z"},
        {"starts_at": (now - timedelta(hours=2)).isoformat(), "ends_at": now.isoformat()},
    ):
        r = await h.api.post("/v1/silences", json={"campaign": "c1", **moments}, headers=ADMIN)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        errors = r.json()["errors"]
        assert [e["field"] for e in errors] == ["ends_at"]
        assert "already over" in errors[0]["message"]
    # a moment later it mutes for that moment: taken
    await _silence(h, ends_at=now + timedelta(seconds=1))
    conn = await asyncpg.connect(h.database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM silences") == 1
        created = "SELECT count(*) FROM audit_log WHERE action = 'silence.create'"
        assert await conn.fetchval(created) == 1
    finally:
        await conn.close()
