"""The audit log every admin change writes (tiendo's shared `audit_log` table).

One writer for every service: the notifier watches the log's last id as the version of
the reference data, so a change that skipped it would go unseen until the next full pass.
"""

import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from tiendo.database import Connection

INSERT = "INSERT INTO audit_log (actor, action, subject, details) VALUES ($1, $2, $3, $4)"


async def record(
    conn: Connection, *, actor: str, action: str, subject: str, details: Mapping[str, Any]
) -> None:
    """Write one audit row in the caller's transaction; `details` becomes its JSON document."""
    document = json.dumps(dict(details), default=_plain, ensure_ascii=False)
    await conn.execute(INSERT, actor, action, subject, document)


def _plain(value: object) -> str:
    # moments as RFC 3339, as the APIs show them; anything else as its text
    return value.isoformat() if isinstance(value, date) else str(value)
