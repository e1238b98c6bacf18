"""The chief's personal link reaches the chief only (docs/briefing.md, "The chief's link"):
the operators' fallback webhook, which stands in for a chief without a webhook of their own,
gets the message without it. Until 6 December 2026 it got the same body, link included, and
anyone reading the ops channel could acknowledge, snooze or explain as that chief."""

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from services.notifier.channels import Channel, EmailChannel, WebhookChannel
from services.notifier.evaluator import Evaluator
from services.notifier.render import Renderer
from services.notifier.settings import NotifierSettings
from tests.support.notifier import (
    BEHIND_ONLY,
    SECRET,
    HttpReceiver,
    SmtpReceiver,
    email_of,
    outbox,
    tree_with_contacts,
)
from tests.support.stack import eventually
from tests.support.world import build_world
from tiendo.database import create_pool

STARTS = datetime(2023, 5, 10, 3, tzinfo=UTC)
LINK = "/l/"


async def test_the_fallback_webhook_gets_the_message_without_the_chiefs_link(
    database: str, http_receiver: HttpReceiver, smtp_receiver: SmtpReceiver
) -> None:
    # chiefs with an email, none with a webhook: the operators' webhook stands in
    units = [
        u.model_copy(update={"chief_webhook": None})
        for u in tree_with_contacts(http_receiver, chat=False)
    ]
    await build_world(database, starts_at=STARTS, units=units)
    ops = http_receiver.url("ops-channel")
    conn = await asyncpg.connect(database)
    pool = await create_pool(database, max_size=4)
    try:
        await conn.execute(
            "INSERT INTO alert_policies (campaign_id, config) VALUES ('c1', $1)",
            json.dumps(BEHIND_ONLY),
        )
        settings = NotifierSettings(database_url=database, webhook_url=ops)
        evaluator = Evaluator(settings, Renderer(), ("email", "webhook"))
        for minutes in (1, 2):
            await evaluator.evaluate_at(pool, STARTS + timedelta(minutes=minutes))
        async with httpx.AsyncClient(timeout=5) as client:
            channels: dict[str, Channel] = {
                "webhook": WebhookChannel(client, SECRET),
                "email": EmailChannel("127.0.0.1", smtp_receiver.port, "t <t@test.invalid>"),
            }
            async with outbox(
                database, channels, max_attempts=2, backoff_seconds=0.05, fallback_webhook=ops
            ):

                async def both() -> None:
                    assert smtp_receiver.to(email_of("00010"))
                    assert any(
                        r.json()["recipient"]["unit"] == "00010"
                        for r in http_receiver.at("ops-channel")
                    )

                await eventually(both, timeout=20)
        mail = smtp_receiver.to(email_of("00010"))[0]
        assert LINK in mail.get_content()  # the chief's own channel has the link
        copy = next(
            r.json()
            for r in http_receiver.at("ops-channel")
            if r.json()["recipient"]["unit"] == "00010"
        )
        assert copy["kind"] == "firing"
        assert copy["firing"]  # the same alerts
        assert "link" not in copy
        assert LINK not in copy["text"]
        assert LINK not in copy["chat"]
        # the row says it is the operators' copy
        assert await conn.fetchval(
            "SELECT fallback FROM notifications WHERE dedup_key = 'c1/00010/1/webhook'"
        )
    finally:
        await pool.close()
        await conn.close()
