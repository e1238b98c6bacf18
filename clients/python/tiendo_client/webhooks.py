"""Verify the webhooks tiendo's notifier sends (Standard Webhooks): signature, freshness and
no replays.

    from tiendo_client.webhooks import Refused, Replayed, WebhookVerifier

    verifier = WebhookVerifier([os.environ["TIENDO_WEBHOOK_SECRET"]])  # whsec_…

    def receive(body: bytes, headers: Mapping[str, str]) -> int:
        try:
            alert = verifier.verify(body, headers)
        except Replayed:
            return 200  # seen already: a redelivery (or a replay), acted on once
        except Refused:
            return 401  # not signed with our secret, tampered, or too old
        try:
            handle(alert)
        except Exception:
            verifier.forget(headers["webhook-id"])  # tiendo's retry is then taken
            return 503
        return 200

Verify the exact body bytes as they arrived, before parsing them. During a rotation pass
both secrets (new first) until tiendo retires the old one. The ids seen are kept in memory
for `remember_seconds`: a receiver that restarts, or runs several processes, should also
keep the `webhook-id`s it acted on in its own store.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

__all__ = ["Refused", "Replayed", "WebhookVerifier"]

TOLERANCE_SECONDS = 300.0
PREFIX = "whsec_"


class Refused(Exception):
    """Not a webhook tiendo signed with one of these secrets, changed on the way, or stale."""


class Replayed(Refused):
    """A `webhook-id` verified before: tiendo redelivering, or someone replaying it. Answer
    2xx (or tiendo retries) and do not act on it again."""


def _webhook(secret: str | bytes) -> Webhook:
    # tiendo issues `whsec_<base64>`; any other string is a development fallback secret
    # whose UTF-8 bytes are the key, as the notifier uses it.
    if isinstance(secret, str) and not secret.startswith(PREFIX):
        secret = secret.encode()
    return Webhook(secret)


class WebhookVerifier:
    """Verifies one endpoint's webhooks with its secrets; not thread-safe (one per loop)."""

    def __init__(
        self,
        secrets: Iterable[str | bytes],
        *,
        tolerance_seconds: float = TOLERANCE_SECONDS,
        remember_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._webhooks = [_webhook(s) for s in secrets]
        if not self._webhooks:
            raise ValueError("at least one secret is needed")
        if remember_seconds < 2 * tolerance_seconds:
            # a replay is refused as stale only once its timestamp is that old
            raise ValueError("remember_seconds must be at least twice tolerance_seconds")
        self._tolerance = tolerance_seconds
        self._remember = remember_seconds
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # id → when to forget it

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Any:
        """The JSON payload of a genuine, fresh, first-seen webhook; raises `Refused`
        (or its `Replayed`) otherwise."""
        lowered = {k.lower(): v for k, v in headers.items()}
        now = self._clock()
        try:
            sent_at = float(lowered.get("webhook-timestamp", ""))
        except ValueError:
            raise Refused("no webhook-timestamp") from None
        if abs(now - sent_at) > self._tolerance:
            raise Refused(f"timestamp {now - sent_at:.0f} s away from now")
        payload = self._verified(body, lowered)
        webhook_id = lowered["webhook-id"]
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        if webhook_id in self._seen:
            raise Replayed(webhook_id)
        self._seen[webhook_id] = now + self._remember
        return payload

    def forget(self, webhook_id: str) -> None:
        """Take the next delivery of `webhook_id` as new: call it when acting on a verified
        webhook failed and you answer 5xx, so that tiendo's redelivery is not `Replayed`."""
        self._seen.pop(webhook_id, None)

    def _verified(self, body: bytes, headers: dict[str, str]) -> Any:
        for webhook in self._webhooks:
            try:
                return webhook.verify(body, headers)
            except WebhookVerificationError:
                continue
            except ValueError as exc:  # a malformed signature header
                raise Refused(f"malformed signature: {exc}") from None
        raise Refused("no signature matches these secrets")
