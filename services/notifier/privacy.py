"""What the delivery log shows of a chief's address: administrators see it (chat URLs
still hidden: they carry tokens); everyone else enough to tell two apart, never enough to
write to it."""

from urllib.parse import urlsplit

from services.notifier.channels import redact_address


def shown_address(channel: str, address: str, *, admin: bool) -> str:
    if admin:
        return redact_address(channel, address)
    return masked(channel, address)


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
