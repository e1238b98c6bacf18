"""Chiefs' contacts as administrators set them: one address per unit and channel, checked
against the channel's address rule, and the language the chief reads on that channel.

The same models check the API's bodies and every row of `tiendo notifier import contacts`,
so a file that passes the CLI's checks fails on the server only for what the server alone
knows (an unknown unit, a channel only this deployment has)."""

import re
from collections.abc import Callable, Collection
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.notifier.languages import Language
from services.notifier.repository.reference import Contact, Recipient

UNIT_PATTERN = r"^[A-Za-z0-9_.-]{1,32}$"
CHANNEL_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"  # as the contacts table's CHECK


# One plain address, nothing an email header would read as more: no display name, list,
# quoting or comment, and (checked apart, `_printable`) no CR/LF or other control character,
# which would end the To: header early (EmailMessage refuses them only at send time).
_EMAIL_ATOM = r"[^@\s\"(),.:;<>\[\]\\]+"
_EMAIL = re.compile(rf"[^@\s\"(),:;<>\[\]\\]+@{_EMAIL_ATOM}(?:\.{_EMAIL_ATOM})+")
_EMAIL_MAX = 254  # RFC 5321's path limit, less the angle brackets
_PHONE = re.compile(r"\+?\d{6,15}")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_WEB_SCHEMES = ("http", "https")


def _printable(address: str) -> bool:
    """No whitespace, no control or invisible format character: an address is one token."""
    return address.isprintable() and not any(c.isspace() for c in address)


def _email(address: str) -> bool:
    return len(address) <= _EMAIL_MAX and _printable(address) and bool(_EMAIL.fullmatch(address))


def _phone(address: str) -> bool:
    # fullmatch, not `^…$`: `$` also matches before a trailing newline
    return bool(_PHONE.fullmatch(address))


def _url(address: str) -> bool:
    """Any scheme://something. No port check: apprise URLs put tokens where a port would be
    (`tgram://123456:AAE…/chat`)."""
    try:
        parts = urlsplit(address)
    except ValueError:  # an unclosed `[` of an IPv6 host: a rule answers, it never raises
        return False
    return bool(_SCHEME.fullmatch(parts.scheme)) and bool(parts.netloc) and _printable(address)


def _webhook_url(address: str) -> bool:
    """A URL the webhook channel can POST to: parsed as httpx will parse it at send time
    (a port like `:abc` fails there with `httpx.InvalidURL`), http(s), a host, a real port."""
    if not _printable(address):
        return False
    try:
        url = httpx.URL(address)
    except (httpx.InvalidURL, ValueError):
        return False
    return (
        url.scheme in _WEB_SCHEMES
        and bool(url.host)
        and (url.port is None or 1 <= url.port <= 65535)
    )


# What an address looks like on each channel the notifier knows of. A channel added later
# (channels.py) without a rule here takes any address, once the notifier sends on it.
# Other services check chiefs' contacts with these rules too: keep the name and the shape.
ADDRESS_RULES: dict[str, tuple[str, Callable[[str], bool]]] = {
    "email": ("a single email address (name@domain)", _email),
    "sms": ("a phone number: digits, an optional leading +", _phone),
    "webhook": ("an http(s) URL with a host and a valid port", _webhook_url),
    "chat": ("an apprise URL (scheme://…)", _url),
}


def address_problem(channel: str, address: str) -> str | None:
    """Why `address` is no address on `channel`; None when it is one (or has no rule)."""
    what, fits = ADDRESS_RULES.get(channel, ("", lambda _: True))
    return None if fits(address) else f"not {what}"


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(
        pattern=CHANNEL_PATTERN,
        description="`email`, `sms`, `webhook`, `chat`, or a channel this deployment adds",
    )
    address: str = Field(min_length=1, max_length=2000, description="in the channel's form")
    language: Language | None = Field(
        None, description="what the chief reads on this channel; null: the campaign policy's"
    )

    @model_validator(mode="after")
    def _address_fits(self) -> "ContactIn":
        if (problem := address_problem(self.channel, self.address)) is not None:
            raise ValueError(f"address: {problem} (channel {self.channel})")
        return self

    def contact(self) -> Contact:
        return Contact(self.channel, self.address, self.language)


class UnitContactsIn(BaseModel):
    """Everything the notifier keeps of a unit's chief; it replaces what was there."""

    model_config = ConfigDict(extra="forbid")

    chief_name: str | None = Field(None, min_length=1, max_length=200)
    contacts: list[ContactIn] = Field(default_factory=list, max_length=32)

    @model_validator(mode="after")
    def _one_address_per_channel(self) -> "UnitContactsIn":
        channels = [c.channel for c in self.contacts]
        repeated = sorted({c for c in channels if channels.count(c) > 1})
        if repeated:
            raise ValueError(f"one address per channel: {', '.join(repeated)} repeated")
        return self


class UnitContactsItem(UnitContactsIn):
    """One unit of a bulk replacement (`PUT /v1/contacts`, the import)."""

    unit: str = Field(pattern=UNIT_PATTERN)


class ContactOut(BaseModel):
    channel: str
    address: str
    language: str | None = Field(description="`vi`, `en`; null: the campaign policy's")


class UnitContactsOut(BaseModel):
    unit: str
    unit_name: str
    chief_name: str | None
    contacts: list[ContactOut]

    @classmethod
    def of(cls, recipient: Recipient) -> "UnitContactsOut":
        return cls(
            unit=recipient.unit,
            unit_name=recipient.name,
            chief_name=recipient.chief_name,
            contacts=[
                ContactOut(channel=c.channel, address=c.address, language=c.language)
                for c in recipient.contacts
            ],
        )


def unknown_channels(body: UnitContactsIn, sent_on: Collection[str]) -> list[tuple[int, str]]:
    """(position, channel) of each contact on a channel the notifier has no rule for and
    does not send on: a typo, or a channel this deployment lacks."""
    return [
        (i, c.channel)
        for i, c in enumerate(body.contacts)
        if c.channel not in ADDRESS_RULES and c.channel not in sent_on
    ]
