"""A campaign's indicators are indicator codes, bounded like every indicator code (the
catalogue's 48 characters, `admin.INDICATOR_CODE_LENGTH`): a longer item is refused by its
length, naming its position, and never echoed back (contract §7, input limits)."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from devtools.localstack import KafkaBroker
from services.aggregator.admin import INDICATOR_CODE_LENGTH, CampaignIn, TargetIn
from services.aggregator.app import create_app as create_aggregator
from tests.support.identities import ADMIN as AUTH
from tests.support.stack import Topics, aggregator_settings, running
from tests.support.world import build_world

START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=5)
BODY = {
    "name": "c",
    "starts_at": START.isoformat(),
    "deadline": (START + timedelta(days=30)).isoformat(),
}


def test_campaign_and_target_indicators_share_the_catalogue_bound() -> None:
    fits = "x" * INDICATOR_CODE_LENGTH
    CampaignIn.model_validate({**BODY, "indicators": [fits]})
    TargetIn.model_validate({"unit": "001", "indicator": fits})
    for model, body in (
        (CampaignIn, {**BODY, "indicators": ["cccd_collected", fits + "x"]}),
        (CampaignIn, {**BODY, "indicators": [""]}),
        (TargetIn, {"unit": "001", "indicator": fits + "x"}),
    ):
        with pytest.raises(ValidationError):
            model.model_validate(body)


async def test_an_over_long_indicator_is_refused_by_its_length_without_being_echoed(
    database: str, kafka: KafkaBroker, topics: Topics
) -> None:
    await build_world(database, starts_at=START, days=30)
    settings = aggregator_settings(database, kafka.bootstrap, topics, consume=False)
    huge = "q" * 100_000
    async with running(create_aggregator(settings)) as client:
        client.headers.update(AUTH)
        r = await client.put(
            "/v1/campaigns/c9", json={**BODY, "indicators": ["cccd_collected", huge]}
        )
        assert r.status_code == 422, r.text[:300]
        assert [e["field"] for e in r.json()["errors"]] == ["indicators.1"]
        assert str(INDICATOR_CODE_LENGTH) in r.json()["errors"][0]["message"]
        assert "q" * 49 not in r.text
        assert len(r.content) < 2000
        assert (await client.get("/v1/campaigns/c9")).status_code == 404
