"""A parent chief's link, which lists its wards' escalated alerts: its "Đã nhận" is its own
(it quiets its own reminders), never reported as the ward's, in the escalation's words or
in the briefing pack; and it may not explain for a ward (403, nothing stored), only for its
own unit. What the ward's chief does through the ward's own link is reported as the
ward's (docs/briefing.md)."""

import io
import re
from datetime import timedelta
from typing import Any

import asyncpg
from openpyxl import load_workbook

from tests.support.identities import ADMIN
from tests.support.notifier import Harness, progress
from tests.support.stack import eventually

NOT_ACKED = "Đơn vị chưa nhận cảnh báo và chưa giải trình."
ACKED = "Đơn vị đã nhận cảnh báo, chưa giải trình."


def _nonce(page: str, action: str) -> str:
    found = re.search(
        rf'action="[^"]*/{action}"[^>]*>\s*<input type="hidden" name="nonce" value="([^"]+)"', page
    )
    assert found, page
    return found.group(1)


async def _link_of(h: Harness, unit: str) -> str:
    async def delivered() -> str:
        links = [r.json()["link"] for r in h.http.at(f"hook/{unit}") if r.json().get("link")]
        assert links, f"no link to {unit} yet"
        return "/l/" + str(links[-1]).split("/l/")[1]

    return await eventually(delivered, timeout=30)


async def _told_of_00004(h: Harness) -> list[Any]:
    """What the district's latest message says the ward did, per indicator."""
    last = [r.json() for r in h.http.at("hook/001")][-1]
    return [a.get("response") for a in last["firing"] if a["unit"] == "00004"]


async def _pack_acknowledged(h: Harness) -> dict[tuple[str, str], bool]:
    r = await h.api.get(
        "/v1/campaigns/c1/briefing",
        params={"at": h.clock.now().isoformat(), "level": "3", "format": "xlsx"},
        headers=ADMIN,
        timeout=300,
    )
    assert r.status_code == 200, r.text
    rows = list(load_workbook(io.BytesIO(r.content))["Giải trình"].iter_rows(values_only=True))
    return {(str(r[0]), str(r[2])): bool(r[-1]) for r in rows[1:]}


async def _change_message(
    h: Harness, unit: str, value: int, indicator: str = "cccd_collected"
) -> None:
    """A ward of 001 catches up: the district gets a change message, still listing 00004."""
    await h.feed.send(progress(unit, value, at=h.clock.now(), indicator=indicator))
    await h.advance(timedelta(minutes=1))
    await h.advance(timedelta(seconds=61))
    await h.settled()


async def test_a_parents_acknowledgement_is_its_own_and_it_may_not_explain_for_a_ward(
    harness: Harness,
) -> None:
    h = harness
    await h.advance(timedelta(minutes=1))  # every ward (and district) behind
    await h.advance(timedelta(seconds=61))
    await h.advance(timedelta(days=2, minutes=1))  # escalated to the districts
    await h.advance(timedelta(seconds=61))
    await h.settled()
    district = await _link_of(h, "001")
    page = (await h.api.get(district)).text
    # the ward's escalated alerts are there to follow, not to explain
    assert "00004|" not in page
    assert "001|cccd_collected" in page
    assert 'id="explain-own"' in page

    r = await h.api.post(f"{district}/acknowledge", data={"nonce": _nonce(page, "acknowledge")})
    assert r.status_code == 303
    page = (await h.api.get(district)).text
    r = await h.api.post(
        f"{district}/explain",
        data={
            "nonce": _nonce(page, "explain"),
            "key": "00004|cccd_collected",
            "cause": "thieu_may",
            "detail": "the district explaining for its ward",
            "committed_date": (h.clock.now() + timedelta(days=5)).date().isoformat(),
        },
    )
    assert r.status_code == 403, r.text[:500]
    assert "Chỉ lãnh đạo của chính đơn vị" in r.text
    # its own unit it explains
    r = await h.api.post(
        f"{district}/explain",
        data={
            "nonce": _nonce(r.text, "explain"),
            "key": "001|cccd_collected",
            "cause": "thieu_may",
            "detail": "the district's own",
            "committed_date": (h.clock.now() + timedelta(days=5)).date().isoformat(),
        },
    )
    assert r.status_code == 303, r.text[:500]
    conn = await asyncpg.connect(h.database)
    try:
        explained = await conn.fetch("SELECT unit FROM explanations")
        assert [r["unit"] for r in explained] == ["001"]
    finally:
        await conn.close()

    await _change_message(h, "00007", 900)
    assert await _told_of_00004(h) == [NOT_ACKED, NOT_ACKED]
    packed = await _pack_acknowledged(h)
    assert [v for k, v in packed.items() if k[1] == "00004"] == [False, False]

    # the ward's own chief acknowledges through its own link: now it is the ward's
    ward = await _link_of(h, "00004")
    page = (await h.api.get(ward)).text
    r = await h.api.post(f"{ward}/acknowledge", data={"nonce": _nonce(page, "acknowledge")})
    assert r.status_code == 303
    await _change_message(h, "00007", 900, "eid_activated_l2")
    assert await _told_of_00004(h) == [ACKED, ACKED]
    packed = await _pack_acknowledged(h)
    assert [v for k, v in packed.items() if k[1] == "00004"] == [True, True]
    page = (await h.api.get(district)).text
    assert "đơn vị đã nhận lúc" in page
