"""The personal link in an alert message: signed, expiring, naming one stored link row.

A token is `<link id>.<expiry, unix seconds>.<signature>`, the signature an HMAC-SHA256 of
the first two parts under the notifier's link secret. The signature proves the notifier
issued it (a changed character is refused); the expiry is checked before the database is
read; the row (one chief, one campaign, the message's alerts) is the authority, so a
token is worth nothing without it, nor once the row is withdrawn: an address its message
was sent to is no longer the unit's contact, or an administrator revoked it
(services/notifier/repository/links.py). Plain functions, time passed in."""

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from tiendo.database import Connection

LINK_PATH = "/l/"


class Refusal(StrEnum):
    TAMPERED = "tampered"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # well signed, but no such link (or not this one's)
    REPLAYED = "replayed"  # a form already taken
    # withdrawn: nothing more is taken; what was acknowledged and explained through it
    # stays, its snoozes end (migration 013)
    CONTACT_CHANGED = "contact_changed"  # sent to an address no longer the unit's contact
    REVOKED = "revoked"  # by an administrator (`POST /v1/links/revoke`)


@dataclass(frozen=True, slots=True)
class Claim:
    link_id: str
    expires_at: datetime


def _signature(secret: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign(secret: str, link_id: str, expires_at: datetime) -> str:
    payload = f"{link_id}.{int(expires_at.timestamp())}"
    return f"{payload}.{_signature(secret, payload)}"


def verify(secret: str, token: str, now: datetime) -> Claim | Refusal:
    """The claim of a token, or why it is refused."""
    parts = token.split(".")
    # a token the notifier signed is ASCII (an id and a signature in base64url, digits);
    # `compare_digest` raises on a non-ASCII str (a 500 for `/l/…%C3%A9`), and `isdigit`
    # takes digits of every script
    if len(parts) != 3 or not token.isascii() or not parts[1].isdigit() or len(token) > 200:
        return Refusal.TAMPERED
    link_id, expiry, signature = parts
    expected = _signature(secret, f"{link_id}.{expiry}")
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return Refusal.TAMPERED
    expires_at = datetime.fromtimestamp(int(expiry), UTC)
    if now >= expires_at:
        return Refusal.EXPIRED
    return Claim(link_id, expires_at)


def url(public_url: str, token: str) -> str:
    return public_url.rstrip("/") + LINK_PATH + token


class LinkIssuer:
    """Creates the link of a message as the message is decided, in its transaction: a
    message rolled back leaves no link, and every resend carries the same one."""

    def __init__(self, secret: str, public_url: str) -> None:
        self._secret = secret
        self._public_url = public_url

    async def issue(
        self,
        conn: Connection,
        campaign_id: str,
        recipient: str,
        alert_ids: Sequence[int],
        message_id: str,
        at: datetime,
    ) -> str:
        """The URL of a new link naming the recipient's chief and the message's alerts."""
        from services.notifier.repository import explanations as sql

        ttl = (await sql.policy(conn, campaign_id)).link_ttl
        link = await sql.create_link(conn, campaign_id, recipient, alert_ids, message_id, at, ttl)
        return url(self._public_url, sign(self._secret, link.id, link.expires_at))
