"""A campaign whose judging fails is left out of a pass, and fails alone.

The notifier's passes and the aggregator's metric refresh judge every campaign in one
pass. One campaign whose judging raised (a bug not met before: on 6 December a nearly
stalled unit's projection overflowed) failed the whole pass, and every pass after it, so
that until a fix shipped no campaign was alerted on and no board was refreshed. Now such
a campaign is left out of the pass: the others are judged as before, its open alerts stay
as they are (not judged, not closed as gone), and the failure is logged and exported as a
gauge (`tiendo_{service}_campaign_failing`) until a whole pass judges it again.

The failure is only known by running the campaign's work, so it is caught here, around
each campaign's, in a transaction of its own: a PostgreSQL error leaves the connection
usable for the next campaign (as a savepoint when the caller's work is in a transaction).
What is not the campaign's (the connection lost, the server shutting down) fails the
pass as before: every campaign after it would fail the same way, and none is to blame.

The aggregator isolates two more kinds of per-campaign work the same way, each with its
own instance and gauge (`work` in the logs): moving a campaign's counters onto a new tree
(`move`) and storing its comparison with the campaign before it (`comparison`); the
notifier its digests and commitment checks (`digests and commitments`). The notifier's
planner isolates each chief's message the same way (`its_own`, `logged`), one group at a
time (services/notifier/groups.py).
"""

from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any, TypeVar

import asyncpg
from prometheus_client import Gauge

from tiendo.board.campaign import Campaign
from tiendo.database import ONE_STATE, Connection
from tiendo.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")

# Errors of the connection or the server, not of one campaign's data.
NOT_THE_CAMPAIGNS = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
)


def its_own(conn: Connection, error: Exception) -> bool:
    """Whether `error`, raised by one item's work (a campaign's, a chief's message), is that
    item's to fail alone; else (`NOT_THE_CAMPAIGNS`, a closed connection) the pass fails."""
    return not (isinstance(error, NOT_THE_CAMPAIGNS) or conn.is_closed())


def logged(error: Exception, before: str | None, events: tuple[str, str], **names: Any) -> str:
    """Log an item's failure: with its traceback when new or changed (`before`: what it
    failed with at the last try), else one line per try (a pass every few seconds)
    rather than a traceback; returns what it failed with."""
    said = f"{type(error).__name__}: {error}"
    if said != before:
        log.exception(events[0], error=said, **names)
    else:
        log.error(events[1], error=said, **names)
    return said


class CampaignIsolation:
    """Runs each campaign's work of a pass apart; remembers which campaigns fail."""

    def __init__(self, gauge: Gauge | None = None, work: str = "judging") -> None:
        self._gauge = gauge
        # what each campaign's work is, in the logs (a service may isolate two kinds)
        self._work = work
        # campaign → the failure last logged with its traceback (a changed one is logged again)
        self._failing: dict[str, str] = {}
        self._labelled: set[str] = set()

    @property
    def failing(self) -> frozenset[str]:
        """The campaigns whose work failed since a whole pass last judged them."""
        return frozenset(self._failing)

    async def each(
        self,
        conn: Connection,
        campaigns: Iterable[Campaign],
        work: Callable[[Campaign], Awaitable[T]],
        *,
        whole: bool = True,
        keep: Collection[str] = (),
        atomic: bool = True,
        reads_one_state: bool = False,
    ) -> dict[str, T]:
        """`work` of each campaign, by id; a campaign whose work raised is missing.

        `whole`: the pass judges every key of each campaign it is given, so a campaign it
        judges is failing no more, and one it no longer judges at all (ended, deleted,
        waiting for its tree) is forgotten, unless in `keep` (left out of this pass only).
        A partial pass (a feed update's few keys) only adds failures: that it judged some
        keys says nothing of the others.

        `atomic`: each campaign's work in a transaction of its own, undone if it raises.
        Else the work commits its own steps (a message each) and keeps those done before
        it raised; the connection must then not be in a transaction.

        `reads_one_state`: each campaign's transaction reads one snapshot
        (`tiendo.database.one_state`): its figures agree with one another. Inside the
        caller's transaction each is a savepoint of it, which reads as the caller's does
        (a transaction's isolation is set by its start)."""
        out: dict[str, T] = {}
        given: set[str] = set()
        own = reads_one_state and not conn.is_in_transaction()
        for campaign in campaigns:
            given.add(campaign.id)
            try:
                if atomic:
                    async with conn.transaction(isolation=ONE_STATE if own else None):
                        out[campaign.id] = await work(campaign)
                else:
                    out[campaign.id] = await work(campaign)
            except Exception as e:  # any bug of one campaign's data or code
                if not its_own(conn, e):
                    raise
                self._failed(campaign.id, e)
            else:
                if whole:
                    self._judged(campaign.id)
        if whole:
            self._forget(given | set(keep))
        return out

    def _failed(self, campaign_id: str, error: Exception) -> None:
        self._failing[campaign_id] = logged(
            error,
            self._failing.get(campaign_id),
            ("campaign_judging_failed", "campaign_still_failing"),
            campaign=campaign_id,
            work=self._work,
        )
        self._set(campaign_id, 1)

    def _judged(self, campaign_id: str) -> None:
        if self._failing.pop(campaign_id, None) is not None:
            log.info("campaign_judged_again", campaign=campaign_id, work=self._work)
        self._set(campaign_id, 0)

    def _forget(self, given: set[str]) -> None:
        """Campaigns a whole pass no longer judges: neither failing nor exported."""
        for campaign_id in sorted(set(self._failing) - given):
            del self._failing[campaign_id]
            log.info("campaign_no_longer_judged", campaign=campaign_id, work=self._work)
        if self._gauge is not None:
            for campaign_id in self._labelled - given:
                self._gauge.remove(campaign_id)
            self._labelled &= given

    def _set(self, campaign_id: str, value: int) -> None:
        if self._gauge is not None:
            self._gauge.labels(campaign_id).set(value)
            self._labelled.add(campaign_id)
