"""The README's showcase (`python -m devtools demo showcase`) built on a test database:
the leaderboard ranks the 126 communes, and the comparison's 2023 figure for the city is
the one Mệnh lệnh 01 (2023) itself reports for that day on its own tree, read by another
route (`/progress/01?as_of=`: no crosswalk involved), part of it unallocated."""

from devtools.demo import history, showcase
from services.aggregator.app import create_app
from services.aggregator.settings import AggregatorSettings
from tests.support.identities import READER
from tests.support.stack import running
from tiendo.clock import ManualClock


async def test_the_showcase_ranks_126_communes_and_carries_2023_whole(database: str) -> None:
    built = await showcase.build(database)

    board = built.leaderboard
    assert board["total"] == 126
    assert len(board["rows"]) == 126
    assert [r["rank"] for r in board["rows"]] == list(range(1, 127))

    compared = built.comparison
    assert len(compared["children"]) == 126
    assert compared["unallocated"] > 0
    assert built.exact + built.split == built.wards_2023 == 579

    app = create_app(
        AggregatorSettings(database_url=database, consume=False), ManualClock(built.now)
    )
    async with running(app) as client:
        r = await client.get(
            f"/v1/campaigns/{history.HISTORY_CAMPAIGN}/progress/01",
            params={"as_of": compared["other_at"]},
            headers=READER,
        )
    assert r.status_code == 200, r.text
    [figures] = [i for i in r.json()["indicators"] if i["indicator"] == showcase.INDICATOR]
    assert compared["unit"]["other_value"] == figures["value"] > 0
    # the Markdown renders every part the README shows
    text = showcase.render(built)
    assert "126 units ranked" in text
    assert f"{compared['unallocated']:,}" in text
