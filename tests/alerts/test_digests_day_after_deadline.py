"""Digests still go out on the day after the deadline, the whole local day, whatever the
deadline's time of day (docs/alerts.md, "Campaign end"). Until 6 December 2026 the campaign
was judged, and its digests accepted, until 24 hours after the deadline: a deadline at noon
lost the day after's 17:00 digest."""

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from services.notifier.channels import Channel, WebhookChannel
from services.notifier.evaluator import Evaluator
from services.notifier.render import Renderer
from services.notifier.settings import NotifierSettings
from tests.support.notifier import SECRET, HttpReceiver, outbox, tree_with_contacts
from tests.support.stack import eventually
from tests.support.world import build_world
from tiendo.database import create_pool


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment of May 2023 in Hà Nội (UTC+7)."""
    return datetime(2023, 5, day, hour, minute, tzinfo=UTC) - timedelta(hours=7)


@pytest.mark.parametrize(
    ("starts", "evaluated", "slots"),
    [
        # deadline 12:00 on 12 May: digests through the end of 13 May
        (
            local(10, 12),
            [local(12, 17, 1), local(13, 7, 1), local(13, 17, 1), local(14, 7, 1)],
            ["20230512T1700+0700", "20230513T0700+0700", "20230513T1700+0700"],
        ),
        # deadline 00:00 on 12 May ("until 11 May"): the day after is 12 May
        (
            local(10, 0),
            [local(12, 7, 1), local(12, 17, 1), local(13, 7, 1)],
            ["20230512T0700+0700", "20230512T1700+0700"],
        ),
    ],
)
async def test_digests_go_out_the_whole_local_day_after_the_deadline(
    database: str,
    http_receiver: HttpReceiver,
    starts: datetime,
    evaluated: list[datetime],
    slots: list[str],
) -> None:
    await build_world(
        database, starts_at=starts, days=2, units=tree_with_contacts(http_receiver, chat=False)
    )
    conn = await asyncpg.connect(database)
    pool = await create_pool(database, max_size=4)
    try:
        evaluator = Evaluator(NotifierSettings(database_url=database), Renderer(), ("webhook",))
        for at in evaluated:
            await evaluator.evaluate_at(pool, at)
        queued = await conn.fetch(
            "SELECT DISTINCT split_part(dedup_key, '/', 3) AS slot FROM notifications"
            " WHERE kind = 'digest' ORDER BY 1"
        )
        assert [r["slot"] for r in queued] == slots
        async with httpx.AsyncClient(timeout=5) as client:
            channels: dict[str, Channel] = {"webhook": WebhookChannel(client, SECRET)}
            async with outbox(database, channels, max_attempts=2, backoff_seconds=0.05):

                async def last_one_arrived() -> None:
                    got = {r.json().get("slot") for r in http_receiver.at("hook/00010")}
                    wanted = datetime.strptime(slots[-1], "%Y%m%dT%H%M%z").isoformat()
                    assert wanted in got

                await eventually(last_one_arrived, timeout=15)
    finally:
        await pool.close()
        await conn.close()
