"""Chiefs' contacts are the notifier's rows: a new channel is one class and one row."""

from datetime import UTC, datetime, timedelta

import asyncpg

from devtools.localstack import KafkaBroker
from services.notifier.app import create_app
from services.notifier.channels import DeliveryResult, Message
from services.notifier.repository import reference
from services.notifier.repository.reference import Contact
from tests.support.identities import ADMIN
from tests.support.notifier import BEHIND_ONLY, Feed, SmtpReceiver, notifier_settings
from tests.support.notifier import progress as report
from tests.support.stack import Topics, eventually, running
from tests.support.world import build_world
from tiendo.clock import ManualClock

STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)


class ZaloChannel:
    """A channel the notifier did not know: what a Zalo OA class would be, minus the API."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, message: Message) -> DeliveryResult:
        self.sent.append(message)
        return DeliveryResult(True)


async def _lagging_ward_told_on_zalo(
    database: str, notifier_dsn: str, kafka: KafkaBroker, topics: Topics, smtp: SmtpReceiver
) -> None:
    """Ward 00010's chief has only a `zalo` contact; the ward lags; one message goes there."""
    await build_world(database, starts_at=STARTS)
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            await reference.replace_contacts(
                conn, "00010", "Chief Hàng Buồm", [Contact("zalo", "zalo:1234", None)], "test"
            )
    finally:
        await conn.close()
    zalo = ZaloChannel()
    clock = ManualClock(STARTS + timedelta(days=10))
    app = create_app(
        notifier_settings(notifier_dsn, kafka, topics, smtp),
        clock=clock,
        channels={"zalo": zalo},
    )
    async with running(app) as api:
        r = await api.put("/v1/campaigns/c1/alert-policy", json=BEHIND_ONLY, headers=ADMIN)
        assert r.status_code == 200, r.text
        # day 10 of 50: every ward is expected at 200; 00010 has done 50
        now = clock.now()
        await Feed(database).send(
            *(report(u, v, at=now) for u, v in (("00004", 300), ("00007", 300), ("00010", 50)))
        )
        await app.state.evaluate_at()
        clock.advance(timedelta(seconds=61))
        await app.state.evaluate_at()

        async def delivered() -> None:
            assert [(m.address, m.delivery_id) for m in zalo.sent] == [
                ("zalo:1234", "c1/00010/1/zalo")
            ]

        await eventually(delivered)
    assert "Chief Hàng Buồm" in zalo.sent[0].text


async def test_a_new_channel_is_one_class_and_one_contact_row(
    database: str, kafka: KafkaBroker, topics: Topics, smtp_receiver: SmtpReceiver
) -> None:
    await _lagging_ward_told_on_zalo(database, database, kafka, topics, smtp_receiver)


async def test_the_notifier_logged_in_as_its_role_alerts_through_the_read_views(
    database: str, kafka: KafkaBroker, topics: Topics, smtp_receiver: SmtpReceiver
) -> None:
    role_dsn = database.replace("://tiendo@", "://tiendo_notifier@", 1)
    await _lagging_ward_told_on_zalo(database, role_dsn, kafka, topics, smtp_receiver)
