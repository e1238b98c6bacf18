"""A campaign whose judging fails is left out of a pass, and fails alone.

The notifier's passes and the aggregator's metric refresh judge every campaign in one
pass. One campaign whose judging raised (a bug not met before: on 6 December a nearly
stalled unit's projection overflowed) failed the whole pass, and every pass after it, so
that until a fix shipped no campaign was alerted on and no board was refreshed. Now such
a campaign is left out of the pass: the others are judged as before, its open alerts stay
as they are (not judged, not closed as gone), and the failure is logged and exported as a
gauge (`tiendo_{service}_campaign_failing`) until a pass judges it again.

The failure is only known by running the campaign's work, so it is caught here, around
each campaign's, in a transaction of its own: a PostgreSQL error leaves the connection
usable for the next campaign (as a savepoint when the caller's work is in a transaction).
"""

from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from prometheus_client import Gauge

from tiendo.board.campaign import Campaign
from tiendo.database import Connection
from tiendo.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")


class CampaignIsolation:
    """Runs each campaign's work of a pass apart; remembers which campaigns fail."""

    def __init__(self, gauge: Gauge | None = None) -> None:
        self._gauge = gauge
        # campaign → the failure last logged with its traceback (a changed one is logged again)
        self._failing: dict[str, str] = {}

    @property
    def failing(self) -> frozenset[str]:
        """The campaigns whose work failed the last time it ran."""
        return frozenset(self._failing)

    async def each(
        self,
        conn: Connection,
        campaigns: Iterable[Campaign],
        work: Callable[[Campaign], Awaitable[T]],
    ) -> dict[str, T]:
        """`work` of each campaign, by id; a campaign whose work raised is missing."""
        out: dict[str, T] = {}
        for campaign in campaigns:
            try:
                async with conn.transaction():
                    out[campaign.id] = await work(campaign)
            except Exception as e:  # any bug of one campaign's data or code
                self._failed(campaign.id, e)
            else:
                self._judged(campaign.id)
        return out

    def _failed(self, campaign_id: str, error: Exception) -> None:
        said = f"{type(error).__name__}: {error}"
        if self._failing.get(campaign_id) != said:
            # the traceback once per failure, not once per pass (every few seconds)
            log.exception("campaign_judging_failed", campaign=campaign_id, error=said)
        else:
            log.error("campaign_still_failing", campaign=campaign_id, error=said)
        self._failing[campaign_id] = said
        if self._gauge is not None:
            self._gauge.labels(campaign_id).set(1)

    def _judged(self, campaign_id: str) -> None:
        if self._failing.pop(campaign_id, None) is not None:
            log.info("campaign_judged_again", campaign=campaign_id)
        if self._gauge is not None:
            self._gauge.labels(campaign_id).set(0)
