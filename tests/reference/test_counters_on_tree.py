"""When a campaign's live counters are on the tree it reports on (`Campaign.counters_on_tree`)
and when `tree_check` must look again (`cutover.next_move`), held to a model of the tree
moments: a moment's tree starts at the latest boundary at or before it, and a campaign
reports at min(max(now, start), deadline) (aggregator_read.tree_moment, SQL)."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.aggregator.cutover import next_move
from tiendo.board.campaign import Campaign
from tiendo.pace import Thresholds

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
hours = st.integers(min_value=0, max_value=24 * 60)


def at(hour: int) -> datetime:
    return EPOCH + timedelta(hours=hour)


def tree_moment(boundaries: list[datetime], moment: datetime) -> datetime | None:
    """The model: the latest boundary at or before `moment` (None: before every one)."""
    return max((b for b in boundaries if b <= moment), default=None)


def planned(
    boundaries: list[datetime], starts_at: datetime, deadline: datetime, when: datetime
) -> Campaign:
    """A campaign as the aggregator plans it at `when`: `tree_at` the tree moment it
    reports on then, `tree_until` the first boundary after that (as the campaigns' rows
    read them, aggregator migration 018)."""
    campaign = Campaign(
        id="c",
        name="c",
        starts_at=starts_at,
        deadline=deadline,
        timezone="Asia/Ho_Chi_Minh",
        indicators=("cccd_collected",),
        thresholds=Thresholds(behind=0.9, stale_after=timedelta(hours=48)),
        milestones=(),
    )
    tree_at = tree_moment(boundaries, campaign.reports_on(when))
    after = [b for b in boundaries if tree_at is None or b > tree_at]
    return Campaign(
        **{
            **{f: getattr(campaign, f) for f in campaign.__slots__},
            "tree_at": tree_at,
            "tree_until": min(after, default=None),
        }
    )


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[datetime], Campaign, datetime]:
    boundaries = sorted({at(h) for h in draw(st.lists(hours, max_size=6))})
    start = draw(hours)
    deadline = start + draw(st.integers(min_value=1, max_value=24 * 30))
    campaign = planned(boundaries, at(start), at(deadline), at(draw(hours)))
    return boundaries, campaign, at(draw(hours))


@given(worlds())
def test_on_its_tree_exactly_when_the_moment_it_reports_on_has_that_tree(
    world: tuple[list[datetime], Campaign, datetime],
) -> None:
    boundaries, campaign, now = world
    assert campaign.counters_on_tree(now) == (
        tree_moment(boundaries, campaign.reports_on(now)) == campaign.tree_at
    )


@given(worlds(), st.lists(hours, min_size=1, max_size=20))
def test_tree_check_looks_again_at_the_first_moment_it_leaves_its_tree(
    world: tuple[list[datetime], Campaign, datetime], later: list[int]
) -> None:
    _, campaign, now = world
    if not campaign.counters_on_tree(now):
        return  # moved at once, not waited for
    wake = next_move([campaign], now)
    if wake is None:
        # on its tree from now on, whatever the clock says
        assert all(campaign.counters_on_tree(now + timedelta(hours=h)) for h in later)
        return
    assert wake > now
    assert not campaign.counters_on_tree(wake)
    assert campaign.counters_on_tree(wake - timedelta(microseconds=1))
    # up to twice as far: off its tree from then on
    for h in later:
        t = now + (wake - now) * (h / (12 * 60))
        assert campaign.counters_on_tree(t) == (t < wake)


def test_the_earliest_of_several_campaigns() -> None:
    boundaries = [at(10), at(30)]
    first = planned(boundaries, at(0), at(100), at(5))
    second = planned(boundaries, at(0), at(100), at(20))
    ended = planned(boundaries, at(0), at(8), at(5))
    assert next_move([second, first, ended], at(6)) == at(10)
    assert next_move([second, ended], at(6)) == at(30)
    # a campaign that ends before the boundary never leaves its tree
    assert next_move([ended], at(6)) is None
