"""What an address looks like on each channel the notifier sends on: the rules that check a
chief's contacts wherever they are set (the notifier's `PUT /v1/contacts` and its import;
the aggregator's `PUT /v1/units`, whose chief columns it hands over), in one place."""

import re
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

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
