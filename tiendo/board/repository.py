"""The board's SQL over the aggregator's tables (read only); a past moment (`as_of`) is read
by the counting rules' own form, `tiendo.counting.as_of`. Callers own transactions."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from tiendo import counting
from tiendo.board.campaign import Campaign
from tiendo.board.recounting import Recounting
from tiendo.counting import Key, ValueAt
from tiendo.database import Connection, fetch_planned_each_time

# A campaign's row with its tree's period (`Campaign.counters_on_tree`); '-infinity' (the
# tree before every boundary) read as None, since asyncpg reads it as a naive datetime.
_CAMPAIGN_ROWS = """
SELECT c.*, nullif(c.tree_at, '-infinity') AS tree_from,
       aggregator_read.tree_until(coalesce(c.tree_at, '-infinity')) AS tree_until
FROM campaigns c
"""
SELECT_CAMPAIGNS = _CAMPAIGN_ROWS + "ORDER BY c.starts_at DESC, c.id"
SELECT_CAMPAIGN = _CAMPAIGN_ROWS + "WHERE c.id = $1"
SELECT_LEVEL = "SELECT code FROM units WHERE level = $1 ORDER BY code"
SELECT_UP_TO_LEVEL = "SELECT code FROM units WHERE level <= $1 ORDER BY code"
_COUNTERS = """
SELECT p.campaign_id, p.unit, u.name AS unit_name, u.level, u.parent_code, p.indicator, p.value,
       p.baseline, p.target, p.deadline, p.last_event_at
FROM progress p JOIN units u ON u.code = p.unit
"""
SELECT_COUNTERS_OF = (
    _COUNTERS + "WHERE p.campaign_id = $1 AND p.indicator = $2 AND p.unit = ANY ($3::text[])"
)
SELECT_COUNTERS_AT_LEVEL = (
    _COUNTERS + "WHERE p.campaign_id = $1 AND p.indicator = $2 AND u.level = $3"
)
SELECT_COUNTERS_OF_INDICATORS = (
    _COUNTERS
    + "WHERE p.campaign_id = $1 AND p.indicator = ANY ($2::text[]) AND p.unit = ANY ($3::text[])"
)
# Every (unit, indicator) the campaign judges: those with a target, set or summed up (the
# SQL form of `figures.is_judged`).
SELECT_TARGETED = (
    _COUNTERS + "WHERE p.campaign_id = $1 AND p.target > 0 ORDER BY p.indicator, p.unit"
)
SELECT_EVERY_COUNTER = _COUNTERS + "WHERE p.campaign_id = $1 ORDER BY p.indicator, p.unit"
# The day rollups (`tiendo.counting.rollups`) from a day on: the changes of the later days
# and of that day itself, per (indicator, unit). A week of rows per key at most.
_CHANGES_FROM_DAY = """
SELECT d.indicator, d.unit,
       coalesce(sum(d.change) FILTER (WHERE d.day > $4), 0)::bigint AS after,
       coalesce(sum(d.change) FILTER (WHERE d.day = $4), 0)::bigint AS on_day
FROM subtree_days d
"""
SELECT_CHANGES_FROM = (
    _CHANGES_FROM_DAY
    + """-- `= ANY` of a custom plan (`fetch_planned_each_time`): the codes are a constant the
-- executor hashes, and the rows are summed in a hash table; joined with the codes' unnest
-- the plan sorted a week of the units' rows by code (a leaderboard's ten thousand: 110
-- instead of 75 ms)
WHERE d.campaign_id = $1 AND d.indicator = ANY ($2::text[]) AND d.day >= $4
  AND d.unit = ANY ($3::text[])
GROUP BY 1, 2
"""
)
# The same of every unit of a level (every version of that level: more codes than a
# leaderboard ranks, never fewer), read without waiting for the level's counters to name
# them: a live leaderboard reads both at once (`tiendo.board.movement.ranking`). Summed
# before the join: the communes are nearly all the rows, and joining their 10,000 sums
# to the level took 57 ms where joining the 81,000 rows took 68 (the kept 10 M dataset).
SELECT_CHANGES_FROM_LEVEL = f"""
SELECT d.* FROM (
{_CHANGES_FROM_DAY}WHERE d.campaign_id = $1 AND d.indicator = ANY ($2::text[]) AND d.day >= $4
GROUP BY 1, 2
) d
JOIN units u ON u.code = d.unit
WHERE u.level = $3
"""
# One row per unit, its days latest first as days after $4: a leaderboard asks for ten
# thousand units of twenty days each, and one record (or date) per (unit, day) was most of
# its decoding, on the event loop
SELECT_DAY_CHANGES = """
SELECT unit, array_agg(day - $4 ORDER BY day DESC) AS days,
       array_agg(change ORDER BY day DESC) AS changes
FROM subtree_days
JOIN unnest($3::text[]) AS w (code) ON w.code = unit
WHERE campaign_id = $1 AND indicator = $2 AND day >= $4 AND change <> 0
GROUP BY unit
"""
SELECT_DAILY_INCREMENTS = """
SELECT day, indicator, increments FROM subtree_days
WHERE campaign_id = $1 AND unit = $2 AND day >= $3
ORDER BY day, indicator
"""


@dataclass(frozen=True, slots=True)
class Place:
    """Where a figure belongs: one (unit, indicator) of a campaign, and the unit's place in
    the tree. The counter and the verdict judged from it share it."""

    campaign_id: str
    unit: str
    unit_name: str
    level: int
    parent: str | None
    indicator: str

    @property
    def key(self) -> Key:
        return Key(self.campaign_id, self.unit, self.indicator)


@dataclass(frozen=True, slots=True)
class Counter(Place):
    """One (unit, indicator) of a campaign as the live counters hold it."""

    value: int
    baseline: int
    target: int
    deadline: datetime | None  # the unit's own deadline, if it has one
    last_event_at: datetime | None

    @classmethod
    def from_row(cls, r: asyncpg.Record) -> "Counter":
        return cls(
            r["campaign_id"],
            r["unit"],
            r["unit_name"],
            r["level"],
            r["parent_code"],
            r["indicator"],
            r["value"],
            r["baseline"],
            r["target"],
            r["deadline"],
            r["last_event_at"],
        )

    def as_counter(self) -> "Counter":
        """Itself (a `CounterRow` makes one): what a ranking judges."""
        return self


# `_COUNTERS`' columns, in the order of `Counter`'s fields
_COUNTER_COLUMNS = (
    "campaign_id",
    "unit",
    "unit_name",
    "level",
    "parent_code",
    "indicator",
    "value",
    "baseline",
    "target",
    "deadline",
    "last_event_at",
)


class CounterRow(asyncpg.Record):
    """A `_COUNTERS` row whose columns a ranking reads by name, made a `Counter` only for
    a unit judged: a live leaderboard ranks ten thousand units, and making a frozen
    dataclass of eleven fields took 5 µs a row on the bench box (half the counters' read).
    The columns are C getters (`itemgetter`): a ranking reads four of each row twice."""

    if TYPE_CHECKING:

        @property
        def unit(self) -> str: ...
        @property
        def value(self) -> int: ...
        @property
        def baseline(self) -> int: ...
        @property
        def target(self) -> int: ...
        @property
        def deadline(self) -> datetime | None: ...
        @property
        def last_event_at(self) -> datetime | None: ...

    else:
        unit = property(itemgetter(_COUNTER_COLUMNS.index("unit")))
        value = property(itemgetter(_COUNTER_COLUMNS.index("value")))
        baseline = property(itemgetter(_COUNTER_COLUMNS.index("baseline")))
        target = property(itemgetter(_COUNTER_COLUMNS.index("target")))
        deadline = property(itemgetter(_COUNTER_COLUMNS.index("deadline")))
        last_event_at = property(itemgetter(_COUNTER_COLUMNS.index("last_event_at")))

    def as_counter(self) -> Counter:
        return Counter(*self.values())


# What a ranking reads of a unit's counter: the counter, or its row not yet made one.
Ranked: TypeAlias = Counter | CounterRow


def _counters(rows: Sequence[asyncpg.Record]) -> list[Counter]:
    """`_COUNTERS`' rows as counters, by position (a leaderboard reads ten thousand: half
    the cost of by name); the columns are checked once per read."""
    _check_columns(rows)
    return [Counter(*r.values()) for r in rows]


def _check_columns(rows: Sequence[asyncpg.Record]) -> None:
    if rows and tuple(rows[0].keys()) != _COUNTER_COLUMNS:
        raise ValueError(f"not the counters' columns: {tuple(rows[0].keys())}")


async def campaigns(conn: Connection) -> dict[str, Campaign]:
    """Every campaign whose figures can be judged (see `Campaign.judgeable`)."""
    found = (Campaign.from_row(r) for r in await conn.fetch(SELECT_CAMPAIGNS))
    return {c.id: c for c in found if c.judgeable()}


async def campaign(conn: Connection, campaign_id: str) -> Campaign | None:
    row = await conn.fetchrow(SELECT_CAMPAIGN, campaign_id)
    return Campaign.from_row(row) if row is not None else None


async def level_codes(conn: Connection, level: int) -> list[str]:
    return [r["code"] for r in await conn.fetch(SELECT_LEVEL, level)]


async def codes_up_to_level(conn: Connection, level: int) -> list[str]:
    return [r["code"] for r in await conn.fetch(SELECT_UP_TO_LEVEL, level)]


async def counters_of(
    conn: Connection, campaign_id: str, indicator: str, codes: Sequence[str]
) -> list[Counter]:
    rows = await conn.fetch(SELECT_COUNTERS_OF, campaign_id, indicator, list(codes))
    return _counters(rows)


async def counters_at_level(
    conn: Connection, campaign_id: str, indicator: str, level: int
) -> list[Counter]:
    """The counters of every unit of a level, each made now (`counter_rows_at_level`)."""
    return [
        r.as_counter() for r in await counter_rows_at_level(conn, campaign_id, indicator, level)
    ]


async def counter_rows_at_level(
    conn: Connection, campaign_id: str, indicator: str, level: int
) -> list[CounterRow]:
    """The counters' rows of every unit of a level (a leaderboard: no list of codes to
    send), each made a `Counter` when one is judged (`CounterRow`)."""
    rows = await conn.fetch(
        SELECT_COUNTERS_AT_LEVEL, campaign_id, indicator, level, record_class=CounterRow
    )
    _check_columns(rows)
    return rows


async def counters_of_indicators(
    conn: Connection, campaign_id: str, indicators: Sequence[str], codes: Sequence[str]
) -> list[Counter]:
    rows = await conn.fetch(
        SELECT_COUNTERS_OF_INDICATORS, campaign_id, list(indicators), list(codes)
    )
    return _counters(rows)


async def targeted(conn: Connection, campaign_id: str, *, only: bool = True) -> list[Counter]:
    """The campaign's counters with a target (`only`), or every one of them."""
    query = SELECT_TARGETED if only else SELECT_EVERY_COUNTER
    return _counters(await conn.fetch(query, campaign_id))


async def values_as_of(
    conn: Connection,
    campaign_id: str,
    indicator: str,
    roots: Sequence[str],
    starts_at: datetime,
    at: datetime,
    *,
    history: bool = False,
    tree_at: datetime | None = None,
) -> dict[str, ValueAt]:
    """Each root's subtree value and last event at `at` (on the tree of `at`, or of
    `tree_at`): the readers' `counting.as_of` (day rollups and one day of events), or with
    `history` the event history alone (`counting.as_of_history`: what `tiendo check` holds
    the counters against)."""
    read = counting.as_of_history if history else counting.as_of
    found = await read(conn, campaign_id, [indicator], roots, starts_at, at, tree_at=tree_at)
    return {root: v for (_, root), v in found.items()}


async def changes_from(
    conn: Connection,
    campaign_id: str,
    indicators: Sequence[str],
    codes: Sequence[str],
    day: date,
) -> dict[tuple[str, str], tuple[int, int]]:
    """(indicator, unit) → (the subtree's change over the days after `day`, over `day`)."""
    rows = await fetch_planned_each_time(
        conn, SELECT_CHANGES_FROM, campaign_id, list(indicators), list(codes), day
    )
    return _changes(rows)


async def changes_from_level(
    conn: Connection, campaign_id: str, indicators: Sequence[str], level: int, day: date
) -> dict[tuple[str, str], tuple[int, int]]:
    """`changes_from` of every unit of `level`."""
    rows = await conn.fetch(SELECT_CHANGES_FROM_LEVEL, campaign_id, list(indicators), level, day)
    return _changes(rows)


def _changes(rows: Sequence[asyncpg.Record]) -> dict[tuple[str, str], tuple[int, int]]:
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


async def day_changes(
    conn: Connection, campaign_id: str, indicator: str, codes: Sequence[str], since: date
) -> dict[str, tuple[list[int], list[int]]]:
    """Each unit's subtree change per day from `since` on, latest day first (days without
    one, and units without any, left out): unit → (days after `since`, changes)."""
    rows = await fetch_planned_each_time(
        conn, SELECT_DAY_CHANGES, campaign_id, indicator, list(codes), since
    )
    return {r[0]: (r[1], r[2]) for r in rows}


async def daily_increments(
    conn: Connection, campaign_id: str, unit: str, since: date
) -> list[tuple[date, str, int]]:
    """The unit's subtree counted increments per (day, indicator) from `since` on."""
    rows = await conn.fetch(SELECT_DAILY_INCREMENTS, campaign_id, unit, since)
    return [(r["day"], r["indicator"], r["increments"]) for r in rows]


# -- a campaign's plan on a tree (`tiendo.board.plans`) ----------------------------------
SELECT_TREE = "SELECT code, parent_code, level FROM units"
SELECT_TARGETS = (
    "SELECT unit, indicator, target, baseline, deadline FROM targets WHERE campaign_id = $1"
)
# The boundary the tree of a moment starts at (the key of `unit_anchors`).
SELECT_TREE_MOMENT = "SELECT aggregator_read.tree_moment($1)"
# The tree of a moment: the versions in force then.
SELECT_TREE_AT = """
SELECT code, parent_code FROM units
WHERE valid_from <= $1 AND $1 < coalesce(valid_to, 'infinity')
"""
# A campaign's own baselines and explicit targets carried onto the tree of its moment, the
# way figures are (`unit_anchors`, `carry_shared`): (unit, indicator, baseline, target);
# target NULL where none was set or carried.
SELECT_CARRIED_PLAN = """
WITH own AS (
    SELECT t.unit, 'b/' || t.indicator AS grp, t.baseline AS amount FROM targets t
    WHERE t.campaign_id = $1
    UNION ALL
    SELECT t.unit, 't/' || t.indicator, t.target FROM targets t
    WHERE t.campaign_id = $1 AND t.target IS NOT NULL
), landed AS (
    SELECT a.anchor AS unit, o.grp, o.amount
    FROM own o JOIN unit_anchors a ON a.tree_at = $2 AND a.unit = o.unit
    UNION ALL
    SELECT s.unit, s.grp, s.amount
    FROM (SELECT array_agg(o.grp) AS g, array_agg(o.unit) AS u, array_agg(o.amount) AS v
          FROM own o JOIN units v ON v.code = o.unit
          WHERE v.valid_to <= $2
            AND NOT EXISTS (SELECT 1 FROM unit_anchors a
                            WHERE a.tree_at = $2 AND a.unit = o.unit)) x
    CROSS JOIN LATERAL aggregator_read.carry_shared($2, x.g, x.u, x.v, NULL) s
)
SELECT unit, substr(grp, 3) AS indicator,
       coalesce(sum(amount) FILTER (WHERE grp LIKE 'b/%'), 0)::bigint AS baseline,
       sum(amount) FILTER (WHERE grp LIKE 't/%')::bigint AS target
FROM landed
GROUP BY 1, 2
"""


@dataclass(frozen=True, slots=True)
class Target:
    """A campaign's target and baseline of a unit, as an administrator set them."""

    unit: str
    indicator: str
    target: int | None  # None: the sum of the children's
    baseline: int
    deadline: datetime | None


@dataclass(frozen=True, slots=True)
class CarriedPlan:
    """A campaign's own baseline and explicit target of a unit of its tree, with those of
    the closed versions carried into it."""

    unit: str
    indicator: str
    baseline: int
    target: int | None


async def tree(conn: Connection) -> dict[str, str | None]:
    """Every unit's parent, by code."""
    return {r["code"]: r["parent_code"] for r in await conn.fetch(SELECT_TREE)}


async def tree_at(conn: Connection, moment: datetime) -> dict[str, str | None]:
    """Every unit of the tree in force at `moment` and its parent, by key."""
    return {r["code"]: r["parent_code"] for r in await conn.fetch(SELECT_TREE_AT, moment)}


async def tree_moment(conn: Connection, at: datetime) -> datetime:
    """The boundary the tree of `at` starts at: what a plan and the anchors are keyed by."""
    moment: datetime = await conn.fetchval(SELECT_TREE_MOMENT, at)
    return moment


async def targets(conn: Connection, campaign_id: str) -> list[Target]:
    return [
        Target(r["unit"], r["indicator"], r["target"], r["baseline"], r["deadline"])
        for r in await conn.fetch(SELECT_TARGETS, campaign_id)
    ]


async def carried_plan(conn: Connection, campaign_id: str, moment: datetime) -> list[CarriedPlan]:
    rows = await conn.fetch(SELECT_CARRIED_PLAN, campaign_id, moment)
    return [CarriedPlan(r["unit"], r["indicator"], r["baseline"], r["target"]) for r in rows]


# A campaign's targets and baselines on one tree, by (unit, indicator): what an `as_of`
# read of a moment on an earlier tree than the campaign's judges by (the live counters
# hold the plan of the campaign's current tree; docs/units-over-time.md).
Plan = Mapping[tuple[str, str], tuple[int, int]]


def on_plan(counters: Sequence[Counter], plan: Plan | None) -> list[Counter]:
    """The counters with `plan`'s target and baseline (none: 0, not judged), or as read."""
    if plan is None:
        return list(counters)
    return [
        replace(
            c,
            target=plan.get((c.unit, c.indicator), (0, 0))[0],
            baseline=plan.get((c.unit, c.indicator), (0, 0))[1],
        )
        for c in counters
    ]


# The version a unit's name means at a moment (docs/units-over-time.md): a version's key
# names exactly its version (a later one's `code@day`, or a retired code's first); an
# official code names its version in force then, else (none is) the version it keys. One
# statement for every service that takes a unit's name: the aggregator's unit paths and
# the notifier's silences (each reads `units` through its own schema).
SELECT_VERSION_NAMED = """
SELECT code, name FROM units
WHERE code = $1 OR (admin_code = $1 AND valid_from <= $2 AND $2 < coalesce(valid_to, 'infinity'))
ORDER BY (admin_code = $1 AND valid_from <= $2 AND $2 < coalesce(valid_to, 'infinity')) DESC,
         code
LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class NamedVersion:
    key: str
    name: str


async def version_named(conn: Connection, name: str, at: datetime) -> NamedVersion | None:
    """The version `name` (an official code or a version's key) means at `at`; None when it
    means none."""
    row = await conn.fetchrow(SELECT_VERSION_NAMED, name, at)
    return NamedVersion(row["code"], row["name"]) if row is not None else None


# The rebuild's row (aggregator migration 020) while any partition's stored next offset is
# short of the offset it replays up to; a partition without a stored offset has replayed
# nothing. Several replicas share the group's offsets, so one row answers for all of them.
SELECT_RECOUNTING = """
SELECT r.started_at,
       sum(greatest(least(coalesce(o.next_offset, p.from_offset), p.until_offset)
                    - p.from_offset, 0))::bigint AS replayed,
       sum(p.until_offset - p.from_offset)::bigint AS total
FROM recounts r
CROSS JOIN LATERAL unnest(r.partitions, r.from_offsets, r.until_offsets)
    AS p (partition, from_offset, until_offset)
LEFT JOIN consumer_offsets o
       ON o.group_id = r.group_id AND o.topic = r.topic AND o.partition = p.partition
GROUP BY r.started_at
HAVING bool_or(coalesce(o.next_offset, p.from_offset) < p.until_offset)
"""


async def recount_in_progress(conn: Connection) -> Recounting | None:
    """The rebuild in progress, if one is (`tiendo.board.recounting`)."""
    row = await conn.fetchrow(SELECT_RECOUNTING)
    if row is None:
        return None
    return Recounting(row["started_at"], row["replayed"], row["total"])
