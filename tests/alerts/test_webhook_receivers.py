"""What receives tiendo's webhooks: the demo receiver takes a genuine message once and
refuses a forged, changed or stale one; the client kit's verifier refuses malformed
headers; production refuses the shared development secret (issue 16)."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import ValidationError
from tiendo_client.webhooks import Refused, WebhookVerifier

from devtools.demo.sink import create_sink
from services.notifier.settings import NotifierSettings
from services.notifier.webhook_secrets import new_secret, signature_headers

BODY = b'{"kind": "firing", "recipient": {"unit": "00010"}}'


def _signed(secret: str, at: datetime, body: bytes = BODY) -> dict[str, str]:
    return signature_headers("c1/00010/1/webhook", body, [secret], at)


async def test_the_demo_receiver_keeps_a_genuine_message_once_and_refuses_the_rest() -> None:
    secret = new_secret()
    sink = create_sink(secret)
    now = datetime.now(UTC)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sink), base_url="http://sink"
    ) as client:
        assert (
            await client.post("/alerts", content=BODY, headers=_signed(secret, now))
        ).json() == {"ok": True}
        # a redelivery (a new timestamp, the same id): answered, not kept twice
        again = await client.post("/alerts", content=BODY, headers=_signed(secret, now))
        assert again.json() == {"ok": True, "duplicate": True}
        refused = [
            (BODY, _signed(new_secret(), now)),  # another secret
            (BODY.replace(b"00010", b"00007"), _signed(secret, now)),  # changed on the way
            (BODY, _signed(secret, now - timedelta(minutes=6))),  # captured and replayed later
            (BODY, {}),  # unsigned
        ]
        for body, headers in refused:
            r = await client.post("/alerts", content=body, headers=headers)
            assert r.status_code == 401, (body, headers)
        assert (await client.get("/alerts")).json() == [
            {"kind": "firing", "recipient": {"unit": "00010"}}
        ]


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-signature": "v1"},
        {"webhook-signature": "v1,not base64!"},
        {"webhook-timestamp": "yesterday"},
        {"webhook-id": ""},
    ],
)
def test_the_verifier_refuses_malformed_headers(change: dict[str, str]) -> None:
    secret = new_secret()
    headers = {**_signed(secret, datetime.now(UTC)), **change}
    with pytest.raises(Refused):
        WebhookVerifier([secret]).verify(BODY, headers)


def test_production_refuses_a_webhook_secret_shared_by_every_receiver() -> None:
    with pytest.raises(ValidationError, match="webhook-secret create"):
        NotifierSettings(environment="production", admin_token="a-real-token", webhook_secret="x")
    # unset in production: no fallback, every endpoint needs its own secret
    assert (
        NotifierSettings(environment="production", admin_token="a-real-token").webhook_secret
        is None
    )
    assert NotifierSettings(environment="test").webhook_secret == "dev-webhook-secret"
