"""Webhook secrets: one per receiving endpoint, rotated with an overlap, and the Standard
Webhooks signature they make (docs/alerts.md, "Webhook signatures").

A secret per endpoint, not one for all: a receiver holds the key that verifies what tiendo
sends it, and with it could forge messages only to itself. The `webhook-id` is the
delivery id, the same on every attempt, so receivers dedupe redeliveries on it; the
timestamp is the attempt's, so a captured message goes stale after five minutes.
"""

import base64
import math
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from standardwebhooks import Webhook

from services.notifier.repository import secrets as secret_sql
from tiendo.database import Connection

PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64 random bytes


class SecretError(Exception):
    """A secret command that does not apply to the endpoint as it is."""


def new_secret() -> str:
    """A fresh `whsec_<base64>` secret."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _webhook(secret: str) -> Webhook:
    # Secrets tiendo issues are `whsec_<base64>`; the development fallback may be any
    # string, whose UTF-8 bytes are then the key (as receivers keyed the HMAC before).
    return Webhook(secret if secret.startswith(PREFIX) else secret.encode())


def signature_headers(
    webhook_id: str, body: bytes, keys: Sequence[str], at: datetime
) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` and one `v1,` signature per key, space-separated
    (during a rotation's overlap a receiver holding either secret can verify)."""
    # whole seconds, in UTC: the timestamp header and the signed text must agree
    moment = datetime.fromtimestamp(math.floor(at.timestamp()), UTC)
    text = body.decode()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": " ".join(_webhook(k).sign(webhook_id, moment, text) for k in keys),
    }


async def create(conn: Connection, endpoint: str, actor: str) -> str:
    """Issue the endpoint's first secret; the secret, to be shown once."""
    async with conn.transaction():
        if await secret_sql.has_current(conn, endpoint):
            raise SecretError(f"{endpoint} has a secret already: rotate it")
        secret = new_secret()
        await secret_sql.add(conn, endpoint, secret, actor, "webhook_secret.create")
    return secret


async def rotate(conn: Connection, endpoint: str, overlap: timedelta, actor: str) -> str:
    """Issue a new current secret; the old one keeps signing too for `overlap`."""
    async with conn.transaction():
        if not await secret_sql.start_overlap(conn, endpoint, overlap):
            raise SecretError(f"{endpoint} has no secret: create one")
        secret = new_secret()
        await secret_sql.add(conn, endpoint, secret, actor, "webhook_secret.rotate")
    return secret


async def retire(conn: Connection, endpoint: str, actor: str) -> int:
    """End the overlap now: only the current secret signs; how many stopped."""
    async with conn.transaction():
        retired = await secret_sql.retire_previous(conn, endpoint, actor)
        if not retired:  # rolls back the audit row too
            raise SecretError(f"{endpoint} has no secret in an overlap")
    return len(retired)
