"""The audit log every admin change writes (tiendo's shared `audit_log` table).

One writer for every service: the notifier watches the log's last id as the version of
the reference data, so a change that skipped it would go unseen until the next full pass.
"""

import getpass
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from tiendo.database import Connection, like_prefix

INSERT = "INSERT INTO audit_log (actor, action, subject, details) VALUES ($1, $2, $3, $4)"


def default_actor() -> str:
    """Who runs a command when it names nobody (`--actor`'s default): the person behind
    sudo rather than root, else the OS user; never empty."""
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser() or "unknown"
    except (KeyError, OSError):
        return "unknown"


async def record(
    conn: Connection, *, actor: str, action: str, subject: str, details: Mapping[str, Any]
) -> None:
    """Write one audit row in the caller's transaction; `details` becomes its JSON document."""
    if not actor.strip():
        # a change nobody made cannot be reviewed (contract §7: who, what, when)
        raise ValueError(f"an audit entry of {action} names nobody")
    document = json.dumps(dict(details), default=_plain, ensure_ascii=False)
    await conn.execute(INSERT, actor, action, subject, document)


# How many of a change's items an audit row lists (a national upload of targets is 85,000
# rows): the first ones, with the count and a digest of the whole list.
LISTED_CHANGES = 1000


def bounded(changes: Sequence[Mapping[str, Any]], limit: int = LISTED_CHANGES) -> dict[str, Any]:
    """`changes` for an audit row's details, bounded: `changed` (how many), the first
    `limit` of them, how many were left out, and the SHA-256 of the whole list as JSON
    (sorted keys, RFC 3339 moments), which a full listing kept elsewhere can be held to."""
    whole = json.dumps(list(changes), default=_plain, ensure_ascii=False, sort_keys=True)
    return {
        "changed": len(changes),
        "changes": list(changes[:limit]),
        "changes_left_out": max(0, len(changes) - limit),
        "changes_sha256": hashlib.sha256(whole.encode()).hexdigest(),
    }


def _plain(value: object) -> str:
    # moments as RFC 3339, as the APIs show them; anything else as its text
    return value.isoformat() if isinstance(value, date) else str(value)


SELECT_ENTRIES = """
SELECT id, at, actor, action, subject, details FROM audit_log
WHERE ($1::bigint IS NULL OR id < $1) AND ($2::text IS NULL OR actor = $2)
  AND ($3::text IS NULL OR action LIKE $3) AND ($4::text IS NULL OR subject = $4)
ORDER BY id DESC
LIMIT $5
"""


async def entries(
    conn: Connection,
    *,
    before: int | None,
    actor: str | None,
    action: str | None,
    subject: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Audit rows newest first (`before`: ids below it, to page), `details` as a mapping."""
    rows = await conn.fetch(
        SELECT_ENTRIES,
        before,
        actor,
        None if action is None else like_prefix(action),
        subject,
        limit,
    )
    return [{**dict(r), "details": json.loads(r["details"])} for r in rows]
