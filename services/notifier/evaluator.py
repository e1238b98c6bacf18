"""Evaluates alert rules for unit states and records lifecycle changes with their
notifications in one transaction (the outbox), so a change is never told twice or lost."""

import json
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.notifier import repository
from services.notifier.rules import Alert, AlertState, Change, UnitState, behind, step
from services.notifier.settings import NotifierSettings
from tiendo.database import Connection
from tiendo.logs import get_logger

log = get_logger(__name__)
RULE_BEHIND = "behind"


def unit_state(row: asyncpg.Record) -> UnitState:
    return UnitState(
        campaign_id=row["campaign_id"],
        unit=row["unit"],
        indicator=row["indicator"],
        value=row["value"],
        baseline=row["baseline"],
        target=row["target"],
        starts_at=row["starts_at"],
        deadline=row["deadline"],
        last_event_at=row["last_event_at"],
        behind_threshold=row["behind_threshold"],
        stale_after=row["stale_after"],
    )


def _alert(row: asyncpg.Record | None) -> Alert | None:
    if row is None:
        return None
    return Alert(AlertState(row["state"]), row["since"], row["fired_at"], row["resolved_at"])


class Evaluator:
    def __init__(self, settings: NotifierSettings) -> None:
        self._settings = settings
        self._for = timedelta(seconds=settings.behind_for_seconds)

    async def evaluate(self, conn: Connection, row: asyncpg.Record, at: datetime) -> Change:
        """Evaluate the `behind` rule of one unit state at `at` (own transaction)."""
        state = unit_state(row)
        verdict = behind(state, at)
        details = {
            "unit_name": row["unit_name"],
            "value": state.value,
            "target": state.target,
            "expected": round(verdict.expected, 1),
            "pace": round(verdict.pace, 3) if verdict.pace is not None else None,
            "required_daily_rate": (
                round(verdict.required_daily_rate, 1)
                if verdict.required_daily_rate is not None
                else None
            ),
        }
        async with conn.transaction():
            current = await conn.fetchrow(
                repository.SELECT_OPEN_ALERT,
                state.campaign_id,
                state.unit,
                state.indicator,
                RULE_BEHIND,
            )
            new, change = step(_alert(current), verdict.holds, at, self._for)
            payload = json.dumps(details)
            if change is Change.NONE:
                if current is not None:
                    await conn.execute(repository.TOUCH_ALERT, current["id"], at, payload)
                return change
            if change is Change.DROPPED:
                assert current is not None
                await conn.execute(repository.DELETE_ALERT, current["id"])
                return change
            assert new is not None
            if current is None:
                alert_id = await conn.fetchval(
                    repository.INSERT_ALERT,
                    state.campaign_id,
                    state.unit,
                    state.indicator,
                    RULE_BEHIND,
                    new.state.value,
                    new.since,
                    new.fired_at,
                    at,
                    payload,
                )
                if alert_id is None:
                    return Change.NONE  # another replica opened it a moment ago
            else:
                alert_id = current["id"]
                await conn.execute(
                    repository.UPDATE_ALERT,
                    alert_id,
                    new.state.value,
                    new.fired_at,
                    new.resolved_at,
                    at,
                    payload,
                )
            if change in (Change.FIRED, Change.RESOLVED):
                await self._enqueue(conn, alert_id, change, row, new, details)
        log.info(
            "alert_" + change.value,
            campaign=state.campaign_id,
            unit=state.unit,
            indicator=state.indicator,
            rule=RULE_BEHIND,
        )
        return change

    async def _enqueue(
        self,
        conn: Connection,
        alert_id: int,
        change: Change,
        row: asyncpg.Record,
        alert: Alert,
        details: dict[str, Any],
    ) -> None:
        contact = await conn.fetchrow(repository.SELECT_CONTACT, row["unit"])
        address = (contact["chief_webhook"] if contact else None) or self._settings.webhook_url
        if not address:
            log.warning("no_recipient", unit=row["unit"], alert_id=alert_id)
            return
        kind = "firing" if change is Change.FIRED else "resolved"
        body = {
            "kind": kind,
            "alert_id": alert_id,
            "rule": RULE_BEHIND,
            "campaign": row["campaign_id"],
            "unit": row["unit"],
            "unit_name": row["unit_name"],
            "indicator": row["indicator"],
            "since": alert.since.isoformat(),
            "fired_at": alert.fired_at.isoformat() if alert.fired_at else None,
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            "recipient": (contact["chief_name"] if contact else None) or row["unit"],
            **details,
        }
        await conn.execute(
            repository.INSERT_NOTIFICATION,
            f"alert:{alert_id}:{kind}",
            alert_id,
            kind,
            body["recipient"],
            "webhook",
            address,
            json.dumps(body, ensure_ascii=False),
        )
