"""Reading a campaign's figures the way boards do, live and from history."""

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import httpx


def _figures(indicators: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (i["indicator"], i["value"], i["last_event_at"], i["status"], i["baseline"])
        for i in indicators
    ]


async def assert_live_equals_history(
    client: httpx.AsyncClient,
    campaign: str,
    units: Iterable[str],
    expected: dict[tuple[str, str], int],
) -> None:
    """For every unit: live figures equal `as_of` now, and values equal `expected`
    ((unit, indicator) → value; every indicator of the unit listed)."""
    at = datetime.now(UTC).isoformat()
    for unit in units:
        r = await client.get(f"/v1/campaigns/{campaign}/progress/{unit}")
        assert r.status_code == 200, r.text
        live = _figures(r.json()["indicators"])
        r = await client.get(f"/v1/campaigns/{campaign}/progress/{unit}", params={"as_of": at})
        assert r.status_code == 200, r.text
        assert live == _figures(r.json()["indicators"]), unit
        assert {(unit, f[0]): f[1] for f in live} == {
            k: v for k, v in expected.items() if k[0] == unit
        }, unit
