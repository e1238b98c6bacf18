"""What the delivery log and the logs show of a chief's address: administrators see it (chat
URLs still hidden: they carry tokens); everyone else, and every log line, enough to tell
two apart, never enough to write to it. The address as it stands alone and inside an
attempt's error text (an SMTP refusal quotes the recipient) follow the same rule."""

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


def redact_address(channel: str, address: str) -> str:
    """An address as an administrator sees it: chat URLs carry tokens, so only the scheme."""
    if channel == "chat":
        return (urlsplit(address).scheme or "chat") + "://***"
    return address


def masked(channel: str, address: str) -> str:
    """The address with its personal or secret part replaced by `***`."""
    if channel == "email":
        local, at, domain = address.rpartition("@")
        if not at or not local:
            return "***"
        return f"{local[0]}***@{domain}"
    if channel in ("webhook", "chat"):
        parts = urlsplit(address)
        host = parts.hostname if channel == "webhook" else None
        return f"{parts.scheme or channel}://{host or ''}{'/' if host else ''}***"
    # phone numbers and anything else: the last two characters, as a receipt does
    return "***" + address[-2:] if len(address) > 6 else "***"


def shown_address(channel: str, address: str, *, admin: bool) -> str:
    if admin:
        return redact_address(channel, address)
    return masked(channel, address)


def shown_text(channel: str, address: str, text: str, *, admin: bool) -> str:
    """`text` (an error a delivery to `address` met) with the address in it as
    `shown_address` shows it; in any case, as a mail server may echo it case-folded."""
    if not address:
        return text
    shown = shown_address(channel, address, admin=admin)
    if shown == address:
        return text
    return re.sub(re.escape(address), lambda _: shown, text, flags=re.IGNORECASE)


def logged_text(channel: str, address: str, text: str | None) -> str | None:
    """An error text fit for a log line: logs are read by more people than the
    administrators, so the address is masked as for a reader."""
    return shown_text(channel, address, text, admin=False) if text is not None else None


def shown_notification(row: Mapping[str, Any], *, admin: bool) -> dict[str, Any]:
    """A delivery-log entry (`address`, `last_error`, `attempt_log`, the rest as they are)
    as the caller may see it: the recipient's address, in the field and inside every
    error text, shown by `shown_address`."""
    channel, address = row["channel"], row["address"]

    def text(t: str | None, to: str = address) -> str | None:
        return shown_text(channel, to, t, admin=admin) if t is not None else None

    def attempt(a: Mapping[str, Any]) -> dict[str, Any]:
        # each attempt went to the contact of its moment (a contact fixed while the message
        # waited): its address, and the error quoting it, shown as the row's are
        to = a.get("address") or address
        return {
            **a,
            "address": shown_address(channel, to, admin=admin),
            "error": text(a.get("error"), to),
        }

    return {
        **row,
        "address": shown_address(channel, address, admin=admin),
        "last_error": text(row["last_error"]),
        "attempt_log": [attempt(a) for a in row["attempt_log"]],
    }
