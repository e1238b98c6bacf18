"""The personal link in an alert message, end to end in a real browser (issue 14): a chief
follows the link from a delivered alert, acknowledges, explains, and the explanation is in
the briefing pack; expired, tampered and replayed links and bad input store nothing."""

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from devtools.localstack import KafkaBroker, free_port
from services.notifier.app import create_app
from tests.briefing.browser import CHROMIUM, chromium
from tests.support.identities import ADMIN
from tests.support.notifier import (
    BEHIND_ONLY,
    Feed,
    Harness,
    HttpReceiver,
    SmtpReceiver,
    notifier_settings,
    tree_with_contacts,
)
from tests.support.stack import Topics, eventually, running
from tests.support.world import build_world
from tiendo.clock import ManualClock

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium (.ci/run installs it)"),
    pytest.mark.timeout(600),
]
IMAGES = os.environ.get("TIENDO_BRIEFING_IMAGES")
STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)
SCRIPT = "<script>alert('x')</script> máy cấp CCCD hỏng"


@pytest.fixture
async def served(
    database: str,
    kafka: KafkaBroker,
    topics: Topics,
    http_receiver: HttpReceiver,
    smtp_receiver: SmtpReceiver,
) -> AsyncIterator[tuple[Harness, str]]:
    """The notifier on a real port (the browser's), its links pointing there."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    clock = ManualClock(STARTS + timedelta(days=10))
    await build_world(
        database,
        starts_at=STARTS,
        units=tree_with_contacts(http_receiver, chat=False),
        indicators=("cccd_collected",),
    )
    settings = notifier_settings(database, kafka, topics, smtp_receiver, public_url=public)
    app = create_app(settings, clock=clock)
    async with running(app) as api:
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None)
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        h = Harness(clock, api, app, Feed(database), http_receiver, smtp_receiver, STARTS, database)
        await h.policy(BEHIND_ONLY)
        try:
            yield h, public
        finally:
            server.should_exit = True
            await task


async def _count(dsn: str, table: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        found: int = await conn.fetchval(f"SELECT count(*) FROM notifier.{table}")
        return found
    finally:
        await conn.close()


def _nonce(page: str, action: str) -> str:
    found = re.search(
        rf'action="[^"]*/{action}"[^>]*>\s*<input type="hidden" name="nonce" value="([^"]+)"', page
    )
    assert found, page
    return found.group(1)


async def test_a_chief_acknowledges_and_explains_from_the_alert_and_the_pack_shows_it(
    served: tuple[Harness, str], tmp_path: Path
) -> None:
    h, public = served
    # the campaign defines its causes (admin only)
    policy = {
        "causes": [
            {"code": "thieu_may", "vi": "Thiếu máy", "en": "Too few machines"},
            {"code": "thieu_can_bo", "vi": "Thiếu cán bộ", "en": "Too few officers"},
        ],
        "snooze_max_hours": 24,
    }
    url = "/v1/campaigns/c1/explanation-policy"
    assert (await h.api.put(url, json=policy)).status_code == 401
    assert (await h.api.put(url, json=policy, headers=ADMIN)).status_code == 200
    await h.advance(timedelta(minutes=1))  # nobody reported: every ward is behind
    await h.advance(timedelta(seconds=61))  # the group wait is over: messages go out
    await h.settled()

    async def delivered() -> str:
        bodies = [r.json() for r in h.http.at("hook/00004")]
        assert bodies, "no message to the chief of 00004 yet"
        return str(bodies[-1]["link"])

    await eventually(delivered, timeout=30)
    link = await delivered()
    assert link.startswith(f"{public}/l/")
    assert link in h.http.at("hook/00004")[-1].json()["text"]

    async with chromium() as browser:
        phone = await browser.new_page(viewport={"width": 390, "height": 844})
        dialogs: list[str] = []
        phone.on("dialog", lambda d: dialogs.append(d.message))
        await phone.goto(link)
        assert "Phường Phúc Xá" in await phone.content()
        causes = await phone.locator("#cause option").all_inner_texts()
        assert causes == ["Thiếu máy", "Thiếu cán bộ"]
        hours = await phone.locator("#hours option").all_inner_texts()
        assert hours[-1] == "24 giờ"
        await phone.click("#acknowledge")
        await phone.wait_for_url(re.compile(r"done=acknowledge"))
        assert await _count(h.database, "acknowledgements") >= 1

        form_page = await phone.content()  # its tokens, for the replay below
        await phone.select_option("#cause", "thieu_may")
        await phone.fill("#detail", SCRIPT)
        committed = (h.clock.now() + timedelta(days=5)).date().isoformat()
        await phone.fill("#committed_date", committed)
        await phone.click("#submit-explanation")
        await phone.wait_for_url(re.compile(r"done=explain"))
        assert dialogs == []  # the script was shown as text, never run
        assert "máy cấp CCCD hỏng" in await phone.inner_text("body")
        await phone.screenshot(path=str(tmp_path / "link-page-phone.png"), full_page=True)

    explained = await _count(h.database, "explanations")
    assert explained == 1
    token_path = link.removeprefix(public)
    async with httpx.AsyncClient(base_url=public) as web:
        # the same form again (its one-time token): refused, nothing stored
        replay = await web.post(
            f"{token_path}/explain",
            data={
                "nonce": _nonce(form_page, "explain"),
                "key": "00004|cccd_collected",
                "cause": "mat_dien",
                "detail": "again",
                "committed_date": committed,
            },
        )
        assert replay.status_code == 409
        assert 'data-reason="replayed"' in replay.text

        async def fresh() -> str:
            return _nonce((await web.get(token_path)).text, "explain")

        bad = [
            ({"cause": "mat_dien", "detail": "x" * 10_000_000, "committed_date": committed}, 413),
            ({"cause": "mat_dien", "detail": "mưa", "committed_date": committed}, 422),
            ({"cause": "mat_dien", "detail": "mưa", "committed_date": "2023-05-01"}, 422),
            # after the campaign: never checked (and 9999-12-31 once failed every pass)
            ({"cause": "thieu_may", "detail": "mưa", "committed_date": "9999-12-31"}, 422),
            ({"cause": "mat_dien", "detail": "mưa", "committed_date": ""}, 422),
        ]
        for fields, status in bad:
            r = await web.post(
                f"{token_path}/explain",
                data={"nonce": await fresh(), "key": "00004|cccd_collected", **fields},
            )
            assert r.status_code == status, (fields["cause"], r.text[:300])
        assert await _count(h.database, "explanations") == explained

        # a changed character anywhere: refused
        tampered = token_path[:-3] + ("A" if token_path[-3] != "A" else "B") + token_path[-2:]
        r = await web.get(tampered)
        assert r.status_code == 403
        assert 'data-reason="tampered"' in r.text

        # the briefing pack shows the explanation, escaped, and marks the silent wards
        pack = await web.get(
            "/v1/campaigns/c1/briefing",
            params={"at": h.clock.now().isoformat(), "level": "3", "format": "html"},
            headers=ADMIN,
        )
        assert pack.status_code == 200
        assert "&lt;script&gt;alert(" in pack.text
        assert "<script>alert(" not in pack.text
        row = pack.text[pack.text.index('data-unit="00004"') :]
        assert "Thiếu máy" in row[: row.index("</tr>")]
        assert "CHƯA GIẢI TRÌNH" in pack.text  # 00007 and 00010 did not explain

        # two days on, the alerts escalate: the district's chief hears who responded
        await h.advance(timedelta(days=2, minutes=1))
        await h.advance(timedelta(seconds=61))
        await h.settled()

        async def escalated() -> str:
            texts = [str(r.json()["text"]) for r in h.http.at("hook/001")]
            assert any("chuyển lên cấp trên" in t for t in texts), texts
            return next(t for t in reversed(texts) if "chuyển lên cấp trên" in t)

        await eventually(escalated, timeout=30)
        told = await escalated()
        assert "Đơn vị đã giải trình: Thiếu máy “" + SCRIPT + "”" in told
        assert f"kịp tiến độ đến hết ngày {date.fromisoformat(committed):%d/%m/%Y}" in told
        assert "Đơn vị chưa nhận cảnh báo và chưa giải trình." in told  # 00007
        # "Đã nhận" stopped the repeats of 00004's alert (nothing changed since); 00007,
        # which did not acknowledge, got its daily repeat
        kinds = {c: [r.json()["kind"] for r in h.http.at(f"hook/{c}")] for c in ("00004", "00007")}
        assert "repeat" not in kinds["00004"]
        assert "repeat" in kinds["00007"]

        # the committed date passes: the chief is told it was not met (nobody reported)
        await h.advance(timedelta(days=6))
        await h.settled()

        async def checked() -> dict[str, Any]:
            found: list[dict[str, Any]] = [
                r.json() for r in h.http.at("hook/00004") if r.json()["kind"] == "commitment"
            ]
            assert len(found) == 1, found
            return found[0]

        await eventually(checked, timeout=30)
        verdict = await checked()
        assert verdict["commitment"]["met"] is False
        assert "KHÔNG ĐẠT" in verdict["text"]

        # a week after the message the link has expired: refused, nothing stored
        r = await web.get(token_path)
        assert r.status_code == 410
        assert "hết hạn" in r.text
        r = await web.post(f"{token_path}/acknowledge", data={"nonce": "x"})
        assert r.status_code == 410
    if IMAGES:
        shutil.copy(tmp_path / "link-page-phone.png", Path(IMAGES) / "link-page-phone.png")
