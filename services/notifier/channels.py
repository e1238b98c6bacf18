"""Delivery channels. Each is a `Channel`: one message in, one result out.

Every send carries the message's delivery id (`webhook-id` and `X-Tiendo-Delivery-Id` on
webhooks, the latter on chat webhooks, a deterministic `Message-ID` on email, the id in the
text of every message), the same on every attempt: a receiver that sees an id twice is
seeing a redelivery (a sender died after the receiver took the message but before the
sender could record it) and can drop it. See docs/alerts.md, "Exactly once".
"""

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol
from urllib.parse import urlsplit

import aiosmtplib
import apprise
import httpx

from services.notifier.privacy import shown_text
from services.notifier.webhook_secrets import signature_headers

DELIVERY_ID_HEADER = "X-Tiendo-Delivery-Id"
# apprise services that POST to a URL of the operator's choosing take extra headers as
# `+Name=value` query parameters.
_APPRISE_HEADER_SCHEMES = frozenset({"json", "jsons", "xml", "xmls", "form", "forms"})


@dataclass(frozen=True, slots=True)
class Message:
    delivery_id: str
    address: str
    subject: str
    text: str
    body: bytes  # the JSON document (webhook body)
    # the address's signing secrets, current first (webhook endpoints have them)
    secrets: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    ok: bool
    error: str | None = None
    # The receiver refused this message for good (an SMTP 5xx to its recipient or its
    # content, an HTTP 4xx but 408/429): sending it again the same way cannot succeed, so
    # it fails at once instead of holding its retries for hours (`tiendo notifier redrive`
    # sends it again once the cause is fixed).
    permanent: bool = False


# HTTP answers that refuse the request as such; 408 (request timeout) and 429 (too many
# requests) ask for a later attempt instead.
_RETRIED_4XX = frozenset({408, 429})


def http_refusal_is_permanent(status: int) -> bool:
    """Whether an HTTP answer refuses the message for good: a 4xx but 408 and 429 (a 5xx is
    the receiver's trouble, and passes)."""
    return 400 <= status < 500 and status not in _RETRIED_4XX


def smtp_refusal_is_permanent(exc: BaseException) -> bool:
    """Whether an SMTP error refuses this message for good: a 5xx to its recipient (RCPT:
    no such user) or to its content (DATA: too big, refused as spam). A 4xx (mailbox full,
    greylisting, a server busy) is retried; so is a 5xx at login or to our own sender, which
    is the server's configuration or ours, the same for every message: fixed within the
    retry window, every message still goes."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(500 <= r.code < 600 for r in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        return 500 <= exc.code < 600
    return False


class Channel(Protocol):
    async def send(self, message: Message) -> DeliveryResult: ...


def message_id(delivery_id: str, domain: str = "tiendo.invalid") -> str:
    """The RFC 5322 Message-ID of a delivery: the same on every attempt."""
    return f"<{hashlib.sha256(delivery_id.encode()).hexdigest()[:40]}@{domain}>"


def error_text(exc: BaseException, channel: str, address: str) -> str:
    """An attempt's error as the attempt log and `last_error` keep it: the exception's type
    and message, the recipient's address in it as an administrator may see it
    (`privacy.shown_text`: chat tokens hidden; the API masks it further for everyone
    else, and the logs mask it). The one place an exception becomes an error text, for
    the channels and the outbox."""
    detail = shown_text(channel, address, str(exc), admin=True)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class WebhookChannel:
    """POSTs the JSON body, signed by the Standard Webhooks spec with the endpoint's
    secrets; `fallback_secret` signs for an endpoint that has none (development only)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        fallback_secret: str | None,
        now: Callable[[], datetime] = _wall_clock,
    ) -> None:
        self._client = client
        self._fallback = fallback_secret
        self._now = now

    async def send(self, message: Message) -> DeliveryResult:
        keys = message.secrets or ((self._fallback,) if self._fallback else ())
        if not keys:
            # Unsigned, a receiver could not tell it from a forgery: fail visibly instead.
            return DeliveryResult(
                False, "no webhook secret for this endpoint (tiendo notifier webhook-secret)"
            )
        # Signed at each attempt: the timestamp is the attempt's, the id the delivery's.
        signed = signature_headers(message.delivery_id, message.body, keys, self._now())
        try:
            response = await self._client.post(
                message.address,
                content=message.body,
                headers={
                    "Content-Type": "application/json",
                    **signed,
                    DELIVERY_ID_HEADER: message.delivery_id,
                },
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # InvalidURL (a port like `:abc`) is no HTTPError: an address the contact rules
            # now refuse, but one stored before they did can still reach here.
            return DeliveryResult(False, error_text(exc, "webhook", message.address))
        if response.is_success:
            return DeliveryResult(True)
        status = response.status_code
        return DeliveryResult(False, f"HTTP {status}", http_refusal_is_permanent(status))


class EmailChannel:
    """Plain-text email over SMTP (aiosmtplib), one connection per message."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout = timeout

    def compose(self, message: Message) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self._sender
        email["To"] = message.address
        email["Subject"] = message.subject
        email["Date"] = formatdate(localtime=False)
        email["Message-ID"] = message_id(message.delivery_id)
        email[DELIVERY_ID_HEADER] = message.delivery_id
        email.set_content(message.text, charset="utf-8")
        return email

    async def send(self, message: Message) -> DeliveryResult:
        try:
            # composed inside: a header refuses an address with CR/LF (ValueError), one the
            # contact rules now refuse but that may have been stored before they did
            await aiosmtplib.send(
                self.compose(message),
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                start_tls=self._starttls,
                timeout=self._timeout,
            )
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            # a refusal quotes the recipient: kept whole for administrators only
            return DeliveryResult(
                False, error_text(exc, "email", message.address), smtp_refusal_is_permanent(exc)
            )
        return DeliveryResult(True)


class ChatChannel:
    """Chat services through apprise: the address is the unit chief's apprise URL
    (`tgram://…`, `slack://…`, `json://host/path` …), from the chief's `chat` contact."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = timeout
        # apprise loads its service plugins on first use; one of them imports the stdlib's
        # deprecated `imghdr` (Python 3.11/3.12). Load them now, that warning muted, rather
        # than in the middle of a delivery.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*imghdr")
            apprise.Apprise.instantiate("json://localhost")

    @staticmethod
    def url_for(address: str, delivery_id: str) -> str:
        """The address with the delivery id header added where the service takes headers."""
        if urlsplit(address).scheme.lower() not in _APPRISE_HEADER_SCHEMES:
            return address
        joiner = "&" if "?" in address else "?"
        return f"{address}{joiner}+{DELIVERY_ID_HEADER}={delivery_id}"

    async def send(self, message: Message) -> DeliveryResult:
        # apprise turns a bad URL into `add() -> False` and its services' errors into a
        # failed result; whatever else it might raise, the outbox records as the attempt's.
        notifier = apprise.Apprise()
        if not notifier.add(self.url_for(message.address, message.delivery_id)):
            return DeliveryResult(False, "not an apprise URL this version supports")
        result = await notifier.async_notify(
            body=message.text, title=message.subject, timeout=self._timeout
        )
        with result:
            if result:
                return DeliveryResult(True)
            errors = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR")]
        if not errors:
            return DeliveryResult(False, "apprise reported a failure")
        # a service's error may quote the URL, tokens and all
        return DeliveryResult(False, shown_text("chat", message.address, errors[-1], admin=True))
