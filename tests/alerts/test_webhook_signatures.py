"""Standard Webhooks end to end (issue 16): the real notifier, on real Kafka and PostgreSQL,
signs each webhook with its endpoint's own secret; a receiver with the client kit's
verifier takes a genuine message once and refuses a changed body, another secret, a stale
timestamp and a replayed id; a rotation signs with both secrets until the old one retires.
Secrets are issued with `tiendo notifier webhook-secret`, as an operator does."""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

import httpx
import pytest
from tiendo_client.webhooks import Refused, Replayed, WebhookVerifier

from services.cli import main
from services.notifier.channels import Message, WebhookChannel
from services.notifier.webhook_secrets import new_secret
from tests.support.notifier import (
    BEHIND_ONLY,
    SECRET,
    Harness,
    HttpReceiver,
    Received,
    progress,
)
from tests.support.stack import eventually

# one message per change and per day while firing; never escalated (one chief)
POLICY = {**BEHIND_ONLY, "escalate_after_seconds": 0}


class Cli(Protocol):
    async def __call__(self, *argv: str) -> str: ...


@pytest.fixture
async def cli(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    """`tiendo notifier …` against the harness's database; the lines it prints on stdout
    (in this process the running notifier's log lines go there too: they are left out)."""
    monkeypatch.setenv("TIENDO_NOTIFIER_DATABASE_URL", harness.database)

    async def run(*argv: str) -> str:
        capsys.readouterr()
        await asyncio.to_thread(main, ["notifier", *argv])
        lines = capsys.readouterr().out.splitlines()
        return "\n".join(line for line in lines if not line.startswith("20"))

    return run


async def _behind(h: Harness) -> None:
    """Ward 00010 has done 50 of the expected 200; its district keeps pace on its own
    figures, the other wards are ahead: only the ward's chief is told."""
    await h.policy(POLICY)
    now = h.clock.now()
    await h.feed.send(
        *(
            progress(unit, value, at=now, indicator=indicator)
            for unit, value in (("00004", 300), ("00007", 300), ("00010", 50), ("002", 250))
            for indicator in ("cccd_collected", "eid_activated_l2")
        )
    )

    async def firing() -> None:
        assert {a["unit"] for a in await h.alerts(state="firing")} == {"00010"}

    await eventually(firing)


async def _next_webhook(h: Harness, unit: str, count: int, by: timedelta) -> Received:
    """Move time on by `by`; the `count`-th webhook to the chief of `unit`."""
    await h.advance(by)

    async def arrived() -> Received:
        hooks = h.http.at(f"hook/{unit}")
        assert len(hooks) >= count
        return hooks[count - 1]

    return await eventually(arrived)


async def test_a_webhook_verifies_with_its_endpoints_secret_once_and_nothing_else(
    harness: Harness, cli: Cli
) -> None:
    h = harness
    mine = await cli("webhook-secret", "create", "--unit", "00010")
    other = await cli("webhook-secret", "create", "--url", h.http.url("hook/00007"))
    assert mine.startswith("whsec_")
    assert other.startswith("whsec_")
    assert mine != other
    assert mine not in await cli("webhook-secret", "list")  # shown once, at creation
    h.http.verifiers["hook/00010"] = WebhookVerifier([mine])
    await _behind(h)
    hook = await _next_webhook(h, "00010", 1, timedelta(seconds=61))
    await h.settled()

    # Delivered, because the receiver verified it; one signature, by the endpoint's secret.
    assert hook.verdict == "verified"
    assert [n["status"] for n in await h.log(channel="webhook")] == ["delivered"]
    assert hook.headers["webhook-id"] == hook.json()["delivery_id"] == "c1/00010/1/webhook"
    assert len(hook.headers["webhook-signature"].split()) == 1
    assert abs(int(hook.headers["webhook-timestamp"]) - time.time()) < 60

    # The same message again, as an attacker who captured it would send it: a replay.
    with pytest.raises(Replayed):
        h.http.verifiers["hook/00010"].verify(hook.body, hook.headers)
    # Another recipient's secret, the development fallback, or a made-up one: refused.
    for secret in (other, SECRET, new_secret()):
        with pytest.raises(Refused, match="no signature matches"):
            WebhookVerifier([secret]).verify(hook.body, hook.headers)
    # One figure changed on the way: refused.
    tampered = hook.body.replace(b'"value": 50', b'"value": 950')
    assert tampered != hook.body
    with pytest.raises(Refused, match="no signature matches"):
        WebhookVerifier([mine]).verify(tampered, hook.headers)
    # The genuine message, presented six minutes after it was sent: stale.
    later = WebhookVerifier([mine], clock=lambda: time.time() + 360)
    with pytest.raises(Refused, match="timestamp"):
        later.verify(hook.body, hook.headers)
    # What a fresh verifier with the right secret accepts, as a control.
    assert WebhookVerifier([mine]).verify(hook.body, hook.headers) == hook.json()


async def test_a_redelivery_carries_the_same_webhook_id_and_is_verified_afresh(
    harness: Harness, cli: Cli
) -> None:
    h = harness
    secret = await cli("webhook-secret", "create", "--unit", "00010")
    h.http.verifiers["hook/00010"] = WebhookVerifier([secret])
    h.http.fail_next["hook/00010"] = 1  # verified, but the receiver fails to act: 503
    await _behind(h)
    await h.advance(timedelta(seconds=61))
    await h.settled()
    failed, redelivered = h.http.at("hook/00010")
    assert failed.headers["webhook-id"] == redelivered.headers["webhook-id"]
    assert failed.body == redelivered.body
    assert failed.headers["webhook-timestamp"] <= redelivered.headers["webhook-timestamp"]
    assert (failed.verdict, redelivered.verdict) == ("verified", "verified")
    [delivered] = await h.log(channel="webhook")
    assert [a["ok"] for a in delivered["attempt_log"]] == [False, True]


async def test_a_message_signed_six_minutes_ago_is_refused_by_the_receiver(
    http_receiver: HttpReceiver,
) -> None:
    secret = new_secret()
    http_receiver.verifiers["hook/00010"] = WebhookVerifier([secret])
    address = http_receiver.url("hook/00010")
    async with httpx.AsyncClient() as client:
        sent_late = WebhookChannel(
            client, None, now=lambda: datetime.now(UTC) - timedelta(minutes=6)
        )
        message = Message("c1/00010/1/webhook", address, "s", "t", b"{}", secrets=(secret,))
        assert not (await sent_late.send(message)).ok
        assert (await WebhookChannel(client, None).send(message)).ok
    [late, on_time] = http_receiver.at("hook/00010")
    assert late.verdict is not None
    assert "timestamp" in late.verdict
    assert on_time.verdict == "verified"  # the same message, signed now


async def test_an_endpoint_without_a_secret_is_not_sent_to_where_there_is_no_fallback(
    http_receiver: HttpReceiver,
) -> None:
    async with httpx.AsyncClient() as client:
        unsigned = WebhookChannel(client, None)
        message = Message("c1/00010/1/webhook", http_receiver.url("hook/00010"), "s", "t", b"{}")
        result = await unsigned.send(message)
    assert not result.ok
    assert result.error is not None
    assert "no webhook secret" in result.error
    assert http_receiver.received == []


async def test_during_a_rotation_both_secrets_verify_and_after_retirement_only_the_new(
    harness: Harness, cli: Cli
) -> None:
    h = harness
    old = await cli("webhook-secret", "create", "--unit", "00010")
    for refused, why in (
        (("create", "--unit", "00010"), "has a secret already: rotate it"),
        (("retire", "--unit", "00010"), "no secret in an overlap"),
        (("rotate", "--unit", "00004", "--overlap", "60"), "has no secret: create one"),
        (("create", "--unit", "99999"), "unit 99999 has no webhook contact"),
    ):
        with pytest.raises(SystemExit, match=why):
            await cli("webhook-secret", *refused)
    await _behind(h)
    first = await _next_webhook(h, "00010", 1, timedelta(seconds=61))
    assert WebhookVerifier([old]).verify(first.body, first.headers)["kind"] == "firing"

    new = await cli("webhook-secret", "rotate", "--unit", "00010", "--overlap", "3600")
    assert new.startswith("whsec_")
    assert new != old
    during = await _next_webhook(h, "00010", 2, timedelta(days=1))  # the daily repeat
    assert during.json()["kind"] == "repeat"
    assert len(during.headers["webhook-signature"].split()) == 2
    for secret in (old, new):
        assert WebhookVerifier([secret]).verify(during.body, during.headers)["kind"] == "repeat"

    await cli("webhook-secret", "retire", "--unit", "00010")
    after = await _next_webhook(h, "00010", 3, timedelta(days=1))
    assert len(after.headers["webhook-signature"].split()) == 1
    assert WebhookVerifier([new]).verify(after.body, after.headers)["kind"] == "repeat"
    with pytest.raises(Refused):
        WebhookVerifier([old]).verify(after.body, after.headers)
    # a receiver still holding both (new first) keeps working throughout
    both = WebhookVerifier([new, old])
    assert [both.verify(m.body, m.headers)["kind"] for m in (first, during, after)] == [
        "firing",
        "repeat",
        "repeat",
    ]
