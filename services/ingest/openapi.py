"""The OpenAPI description of `POST /v1/events`, built from the settings' limits.

The handler reads the raw body itself (size limit, two content types, gzip, precise errors), so
FastAPI cannot derive this operation; it is written here, and it must stay exact: clients
generate code from it and the schemathesis suite checks every response against it. The
schema may be looser than the validator (it cannot know the unit tree), never stricter.
"""

from typing import Any

from services.ingest.settings import IngestSettings
from services.ingest.validation import (
    EVENT_ID_CHARS,
    INDICATOR_CHARS,
    SUBJECT_PATTERN,
    UNIT_CHARS,
)
from tiendo.web import PROBLEM_JSON

PROTOBUF = "application/x-protobuf"
PROTOBUF_ALIASES = ("application/x-protobuf", "application/protobuf")
_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def event_schema(settings: IngestSettings) -> dict[str, Any]:
    return {
        "title": "EventIn",
        "description": "One progress event (contract §4.1).",
        "type": "object",
        "additionalProperties": False,
        "required": ["event_id", "unit", "indicator", "occurred_at"],
        "properties": {
            "event_id": {
                "type": "string",
                "minLength": 1,
                "maxLength": settings.max_event_id_length,
                "pattern": f"^{EVENT_ID_CHARS}+$",
                "description": "client-generated idempotency key: the same id twice is "
                "counted once, forever; sent again with other content it is a conflict "
                "(dead-lettered, the first stays). No raw ID number inside (docs/ingest.md)",
            },
            "unit": {
                "type": "string",
                "minLength": 1,
                "maxLength": settings.max_unit_length,
                "pattern": f"^{UNIT_CHARS}+$",
                "description": "code of a unit of the tree, inside the token's scope",
            },
            "indicator": {
                "type": "string",
                "minLength": 1,
                "maxLength": settings.max_indicator_length,
                "pattern": f"^{INDICATOR_CHARS}+$",
                "description": "indicator code of the catalogue, inside the token's scope",
            },
            "kind": {
                "type": "string",
                "enum": ["increment", "snapshot"],
                "default": "increment",
                "description": "increment: n more done; snapshot: the unit's own cumulative "
                "total as of occurred_at",
            },
            "value": {
                "type": "integer",
                "minimum": -settings.max_increment,
                "maximum": max(settings.max_snapshot, settings.max_increment),
                "default": 1,
                "description": f"increment: non-zero, -{settings.max_increment} to "
                f"{settings.max_increment}; snapshot: 0 to {settings.max_snapshot}",
            },
            "occurred_at": {
                "type": "string",
                "format": "date-time",
                "description": f"RFC 3339 with an offset, `Z` or ±HH:MM (whole minutes "
                f"from -23:59 to +23:59: an offset with seconds is refused); at most "
                f"{settings.future_tolerance_seconds} s in the future and "
                f"{settings.past_horizon_days} days in the past",
                "examples": ["2023-05-10T08:15:00+07:00"],
            },
            "subject": {
                "anyOf": [{"type": "string", "pattern": SUBJECT_PATTERN}, {"type": "null"}],
                "description": "keyed hash (HMAC-SHA256, lowercase hex) of a citizen "
                "reference; only on increments of value 1. A raw ID number is refused.",
            },
        },
    }


def batch_schema(settings: IngestSettings) -> dict[str, Any]:
    return {
        "title": "EventBatchIn",
        "type": "object",
        "additionalProperties": False,
        "required": ["events"],
        "properties": {
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": settings.max_batch,
                "items": {"$ref": "#/components/schemas/EventIn"},
            }
        },
    }


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": _PROBLEM}},
    }
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying (with the same event_ids)",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}


def events_operation(settings: IngestSettings) -> dict[str, Any]:
    return {
        "tags": ["events"],
        "summary": f"Submit one event or a batch of up to {settings.max_batch:,}",
        "description": (
            "**202** only once Kafka has acknowledged every event it accepts. A batch is "
            "atomic at validation: one invalid event and none is published. Events of the "
            "request sharing an `event_id` are not invalid: an exact repeat is accepted once "
            "and listed in `duplicates`; the same id with different content is refused for "
            "every event of that id, listed in `conflicts`, while the others are accepted. "
            "A raw ID number (9-12 digits) in any field is refused (422) and never echoed; "
            "so is a key an event names twice (422). "
            "Retrying after any other answer, or none, is safe with the same `event_id`s; "
            "`GET /v1/events/{event_id}` tells what became of one. The body is JSON "
            '(one event or `{"events": [...]}`) in UTF-8 (`charset=utf-8` or none) or, '
            "for high-volume upstreams, a "
            "serialised `tiendo.events.v1.EventBatch` (`proto/tiendo/events/v1/events.proto`) "
            "with the same rules; in protobuf `value` has no default and `occurred_at` is a "
            "Timestamp plus `occurred_at_offset_seconds` (whole minutes, as in JSON). Either "
            "body may be sent with "
            "`Content-Encoding: gzip` (RFC 1952, one member or several in a row; `x-gzip` "
            "too): the size limit of "
            f"{settings.max_body_bytes} bytes then applies to the decompressed body as "
            "well as to the bytes sent, and ingest stops inflating at the limit (413), so a "
            "zip bomb costs it no more than a body of the limit. Other codings get 415."
        ),
        "operationId": "post_events",
        "security": [{"bearer": []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/EventIn"},
                            {"$ref": "#/components/schemas/EventBatchIn"},
                        ]
                    }
                },
                PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {
            "202": {
                "description": "Every accepted event is durably stored in Kafka; repeats "
                "inside the request are listed by index (`duplicates`, `conflicts`)",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}
                },
            },
            "400": _problem(
                "The body is not JSON (invalid UTF-8, a byte-order mark, NaN or Infinity, a "
                "lone surrogate, a number beyond a double, nesting deeper than 1,024), or "
                "not a serialised EventBatch, or, sent with `Content-Encoding: gzip`, not a "
                "valid gzip stream: not gzip, truncated, corrupt, or followed by bytes that "
                "are not another gzip member (trailing data, zero padding)"
            ),
            "401": _problem(
                "No bearer token, or an unknown, revoked or expired one",
                {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
            ),
            "403": _problem(
                "An event's unit or indicator is outside the token's scope; `errors` lists "
                "each, by index"
            ),
            "413": _problem(
                f"The body, or a gzip body once decompressed, is larger than "
                f"{settings.max_body_bytes} bytes"
            ),
            "415": _problem(
                "Content-Type is neither application/json nor application/x-protobuf, or "
                "names a charset other than UTF-8 for JSON (the detail names it), or "
                "Content-Encoding is neither gzip nor identity (`Accept-Encoding` names "
                "the supported codings)",
                {"Accept-Encoding": {"schema": {"type": "string"}}},
            ),
            "422": _problem(
                "Invalid events: `errors` lists each problem (`index` in `events`, `field`, "
                "`message`; `successors`, key, code and name of each, for a unit code that "
                "was split before the event happened), a key an event names twice among "
                "them (`field`: the key; `index` null for the body's own object); none was "
                "accepted"
            ),
            "429": _problem("Over the token's rate limit", _RETRY_AFTER),
            "503": _problem(
                "Kafka could not take the events in time, or ingest cannot check tokens "
                "now; retry with the same event_ids",
                _RETRY_AFTER,
            ),
        },
    }


def patch_schema(schema: dict[str, Any], settings: IngestSettings) -> dict[str, Any]:
    """Complete FastAPI's schema: the events operation, its models, the bearer scheme."""
    components = schema.setdefault("components", {})
    models = components.setdefault("schemas", {})
    models["EventIn"] = event_schema(settings)
    models["EventBatchIn"] = batch_schema(settings)
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "an ingest token issued with `tiendo ingest token-create`",
        }
    }
    schema["paths"]["/v1/events"] = {"post": events_operation(settings)}
    metrics = schema["paths"].get("/metrics", {}).get("get")
    if metrics is not None:
        metrics["responses"]["200"]["content"] = {"text/plain": {"schema": {"type": "string"}}}
    return schema
