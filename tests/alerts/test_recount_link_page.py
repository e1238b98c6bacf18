"""While a rebuild replays the events topic, what the notifier shows of the figures says
so instead of showing figures short of the events (docs/alerts.md "While the counters are
rebuilt"): the chief's page a notice in Vietnamese and English where the figures were, an
explanation (which stores the unit's value of now) refused with the form kept, the
briefing pack a 503 as the aggregator's read API answers. The service stays ready, and
says it waits. Once the replay has caught up, all of it is as before."""

import re
from datetime import timedelta

import asyncpg
import httpx

from services.aggregator.repository import positions as position_sql
from services.aggregator.repository import recount as recount_sql
from tests.support.identities import ADMIN
from tests.support.notifier import Harness, delivered_link
from tests.support.stack import eventually

GROUP, TOPIC = "agg-rebuilt", "progress-events-rebuilt"
FIGURES = "Đã đạt / chỉ tiêu"


def _nonce(page: str, action: str) -> str:
    found = re.search(
        rf'action="[^"]*/{action}"[^>]*>\s*<input type="hidden" name="nonce" value="([^"]+)"', page
    )
    assert found, page
    return found.group(1)


async def _waiting(h: Harness) -> float:
    exported = (await h.api.get("/metrics")).text
    found = re.search(r"^tiendo_notifier_waiting_for_recount (\S+)$", exported, re.M)
    assert found, "no tiendo_notifier_waiting_for_recount"
    return float(found.group(1))


async def test_the_page_and_the_pack_say_figures_are_being_recounted(harness: Harness) -> None:
    h = harness
    path = await delivered_link(h)  # nobody reported: every ward is behind, at 0
    conn = await asyncpg.connect(h.database)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=h.app), base_url="http://test"
        ) as web:
            page = (await web.get(path)).text
            assert FIGURES in page
            assert 'id="recounting"' not in page

            # a rebuild has reset the counters and replayed 1 of its 4 records
            async with conn.transaction():
                await recount_sql.begin_recount(
                    conn,
                    started_at=h.clock.now(),
                    actor="ops",
                    group_id=GROUP,
                    topic=TOPIC,
                    replays={0: (0, 4)},
                )
                await position_sql.set_offsets(conn, GROUP, TOPIC, {0: 1})

            r = await web.get(path)
            assert r.status_code == 200
            assert FIGURES not in r.text
            assert "<svg" not in r.text
            assert 'id="recounting"' in r.text
            assert "Số liệu đang được tính lại" in r.text
            assert "The figures are being recounted" in r.text
            assert "(đã xong 25 %)" in r.text
            # the rest of the page is there: the alert, its forms
            assert "Phường Phúc Xá" in r.text
            nonce = _nonce(r.text, "explain")
            committed = (h.clock.now() + timedelta(days=5)).date().isoformat()
            form = {
                "nonce": nonce,
                "key": "00004|cccd_collected",
                "cause": "thieu_may",
                "detail": "máy hỏng",
                "committed_date": committed,
            }
            refused = await web.post(f"{path}/explain", data=form)
            assert refused.status_code == 503, refused.text[:300]
            assert refused.headers["Retry-After"] == "30"
            assert "chưa thể lưu giải trình" in refused.text
            assert "máy hỏng" in refused.text  # the form kept as typed
            assert await conn.fetchval("SELECT count(*) FROM explanations") == 0

            pack = await h.api.get(
                "/v1/campaigns/c1/briefing", params={"format": "xlsx"}, headers=ADMIN
            )
            assert pack.status_code == 503, pack.text[:300]
            assert pack.headers["Retry-After"] == "30"
            problem = pack.json()
            assert problem["type"].endswith("/recount-in-progress")
            assert "1 of 4 records replayed" in problem["detail"]

            # waiting is no failure: ready, and said so
            async def waits() -> None:
                assert await _waiting(h) == 1.0

            await eventually(waits, timeout=30)
            ready = await h.api.get("/readyz")
            assert ready.status_code == 200, ready.text

            # the replay has caught up
            await position_sql.set_offsets(conn, GROUP, TOPIC, {0: 4})
            page = (await web.get(path)).text
            assert FIGURES in page
            assert 'id="recounting"' not in page
            # the form refused during the rebuild, sent again as it was: stored now
            stored = await web.post(f"{path}/explain", data=form)
            assert stored.status_code == 303, stored.text[:300]
            assert await conn.fetchval("SELECT count(*) FROM explanations") == 1

            async def judges() -> None:
                assert await _waiting(h) == 0.0

            await eventually(judges, timeout=30)
            pack = await h.api.get(
                "/v1/campaigns/c1/briefing", params={"format": "xlsx"}, headers=ADMIN, timeout=300
            )
            assert pack.status_code == 200, pack.text[:300]
    finally:
        await conn.close()
