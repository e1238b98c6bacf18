"""Each contact is written to in its own language: a chief whose email says `en` reads
English there, every other contact the campaign policy's language (Vietnamese by default).
Real SMTP and webhook receivers; the notifier logged in as its own role."""

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import asyncpg
import pytest

from devtools.localstack import KafkaBroker
from services.notifier.app import create_app
from services.notifier.repository import reference
from services.notifier.repository.reference import Contact
from tests.support.identities import ADMIN
from tests.support.notifier import (
    BEHIND_ONLY,
    Feed,
    HttpReceiver,
    SmtpReceiver,
    notifier_settings,
)
from tests.support.notifier import progress as report
from tests.support.stack import Topics, eventually, running
from tests.support.world import build_world
from tiendo.clock import ManualClock

STARTS = datetime(2023, 5, 10, 3, 0, tzinfo=UTC)
ENGLISH = "phucxa@test.invalid"  # ward 00004's chief reads English by email
VIETNAMESE = "hangbuom@test.invalid"  # ward 00010's chief: no language, the policy's


async def _chiefs(database: str, http: HttpReceiver) -> None:
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            await reference.replace_contacts(
                conn,
                "00004",
                "Chief Phúc Xá",
                [Contact("email", ENGLISH, "en"), Contact("webhook", http.url("hook/00004"), None)],
                "test",
            )
            await reference.replace_contacts(
                conn, "00010", "Chief Hàng Buồm", [Contact("email", VIETNAMESE, None)], "test"
            )
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", ["alert", "digest"])
async def test_each_chief_reads_in_the_language_of_the_contact(
    database: str,
    kafka: KafkaBroker,
    topics: Topics,
    smtp_receiver: SmtpReceiver,
    http_receiver: HttpReceiver,
    kind: str,
) -> None:
    await build_world(database, starts_at=STARTS)
    await _chiefs(database, http_receiver)
    clock = ManualClock(STARTS + timedelta(days=10, hours=1))  # 11:00 in Hà Nội
    role_dsn = database.replace("://tiendo@", "://tiendo_notifier@", 1)
    app = create_app(notifier_settings(role_dsn, kafka, topics, smtp_receiver), clock=clock)
    # the digest alone: no alert, so each contact gets one message
    digest = {**BEHIND_ONLY, "behind": {"enabled": False}, "digest_times": ["11:00"]}
    policy = BEHIND_ONLY if kind == "alert" else digest
    async with running(app) as api:
        r = await api.put("/v1/campaigns/c1/alert-policy", json=policy, headers=ADMIN)
        assert r.status_code == 200, r.text
        # day 10 of 50: every ward is expected at 200; 00004 and 00010 have done 50
        await Feed(database).send(
            *(
                report(u, v, at=clock.now())
                for u, v in (("00004", 50), ("00007", 300), ("00010", 50))
            )
        )
        await app.state.evaluate_at()
        clock.advance(timedelta(seconds=61))  # past group_wait
        await app.state.evaluate_at()

        async def delivered() -> tuple[EmailMessage, EmailMessage, dict[str, str]]:
            english, vietnamese = smtp_receiver.to(ENGLISH), smtp_receiver.to(VIETNAMESE)
            hooks = http_receiver.at("hook/00004")
            assert (len(english), len(vietnamese), len(hooks)) == (1, 1, 1)
            return english[0], vietnamese[0], hooks[0].json()

        english, vietnamese, hook = await eventually(delivered)
        sent_as = "digest" if kind == "digest" else "firing"
        log = (await api.get("/v1/notifications", params={"kind": sent_as}, headers=ADMIN)).json()
    word = {
        "alert": ("progress alert", "cảnh báo tiến độ"),
        "digest": ("Progress digest", "Tổng hợp tiến độ"),
    }
    assert word[kind][0] in str(english["Subject"]), english["Subject"]
    assert word[kind][1] in str(vietnamese["Subject"]), vietnamese["Subject"]
    # the same chief's webhook, with no language of its own, is the policy's: Vietnamese
    assert (hook["language"], hook["kind"]) == ("vi", sent_as)
    assert word[kind][1] in hook["subject"]
    # (the units with no chief's contact have a failed row each on channel `none`)
    reached = [n for n in log if n["channel"] != "none"]
    assert sorted((n["recipient"], n["channel"], n["language"]) for n in reached) == [
        ("00004", "email", "en"),
        ("00004", "webhook", "vi"),
        ("00010", "email", "vi"),
    ]
