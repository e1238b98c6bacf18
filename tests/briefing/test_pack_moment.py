"""A briefing pack is of a moment that has come: one asked for a later moment (Monday's
pack prepared on Saturday) is refused with a 422 naming `at`, rather than printed under
Monday's date with figures nobody can know yet; up to now it is made (docs/briefing.md)."""

from datetime import timedelta

from tests.support.identities import ADMIN
from tests.support.notifier import Harness

URL = "/v1/campaigns/c1/briefing"


async def test_a_pack_of_a_moment_still_to_come_is_refused(harness: Harness) -> None:
    h = harness  # Saturday 20 May 2023, 10:00 in Hà Nội
    now = h.clock.now()
    for later in (timedelta(seconds=1), timedelta(days=2, hours=-2)):  # Monday 08:00
        r = await h.api.get(
            URL, params={"at": (now + later).isoformat(), "format": "xlsx"}, headers=ADMIN
        )
        assert r.status_code == 422, r.text[:300]
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert [e["field"] for e in problem["errors"]] == ["at"]
        assert "has not come yet" in problem["detail"]
    # the moment itself, and the latest briefing by default, are made
    for params in ({"at": now.isoformat()}, {}):
        r = await h.api.get(URL, params={**params, "format": "xlsx"}, headers=ADMIN, timeout=300)
        assert r.status_code == 200, r.text[:300]
