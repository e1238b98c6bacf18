"""A whole JSON body through the product's own two steps, for the validation tests."""

from datetime import datetime

from services.ingest.validation import Catalog, FieldError, Limits, envelope, validate_items
from tiendo.event import Event


def validate_body(
    body: object, catalog: Catalog, now: datetime, limits: Limits | None = None
) -> tuple[list[Event], list[FieldError]]:
    """A decoded JSON body (one event or {"events": [...]}) → its events, or every error:
    `envelope` then `validate_items`, as ingest's intake runs them."""
    limits = limits or Limits()
    items, errors = envelope(body, limits)
    if errors:
        return [], errors
    return validate_items(items, catalog, now, limits)
