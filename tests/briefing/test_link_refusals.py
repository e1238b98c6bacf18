"""The chief's link refuses what it cannot take with a 4xx, never a 5xx: a token altered
with any character, ASCII or not, is a 403 like every altered token; a form sent other
than URL-encoded (the only way the page sends it, and the only body the NUL guard
searches) is a 415, nothing stored (docs/briefing.md)."""

import re
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from hypothesis import given
from hypothesis import strategies as st

from services.notifier.links import Refusal, sign, verify
from tests.support.notifier import Harness, delivered_link

SECRET = "test-link-secret"
ISSUED = datetime(2023, 5, 20, 3, 0, tzinfo=UTC)
EXPIRES = ISSUED + timedelta(days=7)


@given(st.data(), st.characters(codec="utf-8", exclude_characters="."))
def test_a_token_with_any_character_changed_is_refused_as_altered(
    data: st.DataObject, c: str
) -> None:
    token = sign(SECRET, "abcdefghijklmnop", EXPIRES)
    i = data.draw(st.integers(0, len(token) - 1))
    changed = token[:i] + c + token[i + 1 :]
    if changed != token:
        assert verify(SECRET, changed, ISSUED) is Refusal.TAMPERED


def _client(h: Harness) -> httpx.AsyncClient:
    # a server error answered as the server would (500), not raised into the test
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=h.app, raise_app_exceptions=False),
        base_url="http://test",
    )


async def test_the_link_refuses_a_non_ascii_token_and_a_multipart_form(harness: Harness) -> None:
    h = harness
    path = await delivered_link(h)
    async with _client(h) as web:
        page = (await web.get(path)).text
        assert "Cam kết kịp tiến độ đến hết ngày" in page  # the day the check ends with
        for altered in (path[:-1] + "%C3%A9", "/l/abc.123.%C3%A9", path + "%E2%80%8B"):
            r = await web.get(altered)
            assert r.status_code == 403, (altered, r.status_code)
            assert 'data-reason="tampered"' in r.text

        nonce = re.search(
            r'action="[^"]*/explain"[^>]*>\s*<input type="hidden" name="nonce" value="([^"]+)"',
            page,
        )
        assert nonce
        fields = {
            "nonce": nonce.group(1),
            "key": "00004|cccd_collected",
            "cause": "thieu_may",
            "detail": "máy\x00hỏng",
            "committed_date": (h.clock.now() + timedelta(days=5)).date().isoformat(),
        }
        r = await web.post(f"{path}/explain", files={k: (None, v) for k, v in fields.items()})
        assert r.status_code == 415, r.text[:300]
        assert r.headers["content-type"] == "application/problem+json"
        # the same form URL-encoded: the NUL guard names the field (422)
        r = await web.post(f"{path}/explain", data=fields)
        assert r.status_code == 422, r.text[:300]
        assert [e["field"] for e in r.json()["errors"]] == ["detail"]
        # and without the NUL it is stored: the form's token was never taken
        r = await web.post(f"{path}/explain", data={**fields, "detail": "máy hỏng"})
        assert r.status_code == 303, r.text[:300]
    conn = await asyncpg.connect(h.database)
    try:
        stored = await conn.fetch("SELECT unit, detail FROM explanations")
        assert [tuple(r) for r in stored] == [("00004", "máy hỏng")]
    finally:
        await conn.close()
