"""Counting in one room: which events count, and how they make each unit's value.

The rules (docs/contract.md §5 in the product's words, docs/semantics.md for operators):

1. An event counts for a campaign when its indicator is one of the campaign's and its
   `occurred_at` lies in [starts_at, deadline]; any other event is stored, never counted.
   An `event_id` is applied once, forever: a second delivery changes nothing. The first
   applied stays; a later one with other content (`content.content_hash`) is a conflict,
   dead-lettered.
2. A citizen (`subject`, on increments) counts once per indicator, at the earliest of its
   events by (occurred_at, event_id), wherever that happened; a late earlier event takes
   the count over.
3. A unit's own value at T is its latest snapshot in [start, T], latest by (occurred_at,
   event_id), a snapshot standing for the whole own total, baseline included …
4. … plus the counted increments after it; without a snapshot, its baseline plus the
   counted increments in [start, T]. A moment after the deadline is the deadline.
5. Its last report is its latest counted event in [start, T].
6. A unit's value is its own plus its children's, to any depth …
7. … on the tree in force at T (at least the start, at most the deadline): an event counts
   for the version its code meant at `occurred_at` (docs/units-over-time.md), and a version
   closed by T is carried into the versions in force through the crosswalk — `whole` into
   its successor, by shares (`carry.allocate`, largest remainder) or, split without shares,
   to the lowest unit above all its successors. A version outside that tree shows nothing.

Three forms, the three functions below, each built from `rules.py`, where every rule's
three SQL forms sit side by side: `apply` (the live counters, batch by batch, in any order,
with any duplicates and restarts), `recount` (the counters again from the stored events:
rebuild, admin changes) and `as_of_history` (the figures of any moment, from the history). Live
equals history: after any applies and recounts, the counters equal `as_of_history` now.
The readers' `as_of` answers the same from the day rollups (`as_of_days`) where they are
kept, and from the history elsewhere. The pure
reference model (tests/counting/model.py) states the rules once more in Python, and the
tests hold every form equal to it.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tiendo.counting import as_of_days, batch, reach, rollups, rules
from tiendo.database import Connection
from tiendo.event import Event


@dataclass(frozen=True, slots=True, order=True)
class Key:
    """One counter: a (campaign, unit, indicator); every service names a key by it."""

    campaign_id: str
    unit: str
    indicator: str


@dataclass(frozen=True, slots=True)
class Unappliable:
    """A staged event that is not applied: its unit or indicator is unknown, or its
    event_id is stored with other content (a dead letter)."""

    partition: int
    offset: int
    event_id: str
    reason: str
    unit: str
    indicator: str


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    new_events: int
    changed: list[Key]
    conflicts: list[Unappliable] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ValueAt:
    value: int
    last_event_at: datetime | None


# -- apply: the live counters ------------------------------------------------------------
async def prepare(conn: Connection) -> None:
    """Create this connection's staging tables, unless it has them (dropped with a rolled
    back transaction that created them, they are created again)."""
    if not await conn.fetchval(batch.HAS_STAGING):
        await conn.execute(batch.CREATE_STAGING)


async def lock_apply(conn: Connection) -> None:
    """Wait for any re-plan (admin change) to commit; applies run side by side."""
    await conn.execute(batch.LOCK_APPLY)


async def try_lock_apply(conn: Connection) -> bool:
    """`lock_apply` if no re-plan or rebuild holds the lock now; False (not taken) if one
    does, instead of waiting for it."""
    return bool(await conn.fetchval(batch.TRY_LOCK_APPLY))


async def stage(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Load `batch.staging_row`s for the next `apply`."""
    await conn.copy_records_to_table("batch_in", records=rows, columns=batch.STAGING_COLUMNS)


async def take_unappliable(conn: Connection) -> list[Unappliable]:
    """Attribute the staged events to the versions their codes meant when they happened,
    and take those that can never be applied out of the batch."""
    await conn.execute(batch.ATTRIBUTE_REUSED)
    await conn.execute(batch.ATTRIBUTE_RETIRED)
    return _unappliable(await conn.fetch(batch.TAKE_UNAPPLIABLE))


def _unappliable(rows: Sequence[Any]) -> list[Unappliable]:
    return [
        Unappliable(
            r["kafka_partition"],
            r["kafka_offset"],
            r["event_id"],
            r["reason"],
            r["unit"],
            r["indicator"],
        )
        for r in rows
    ]


async def apply(
    conn: Connection, *, distinct_ids: bool = False, unusable: Sequence[str] = ()
) -> BatchOutcome:
    """Apply what `stage` loaded (rules 1–6): dedup, count, roll up, count how far back
    the rollups changed (`reach`); return the keys whose figures moved, and the conflicts
    to dead-letter. `distinct_ids`: no event_id repeats
    within the batch; `unusable`: campaigns left out. The caller owns the transaction."""
    await lock_apply(conn)
    await conn.execute(batch.APPLY_SETTINGS)
    # a version carried by shares is recounted, not spread (see BATCH_HAS_SHARED)
    shared = bool(await conn.fetchval(batch.BATCH_HAS_SHARED))
    if shared:
        await conn.execute(batch.LOCK_REPLAN)
    status = await conn.execute(
        batch.INSERT_NEW_EVENTS_DISTINCT if distinct_ids else batch.INSERT_NEW_EVENTS
    )
    new_events = int(str(status).rsplit(" ", 1)[-1])
    if new_events and await conn.fetchval(
        "SELECT count(*) FROM batch_new WHERE subject IS NOT NULL"
    ):
        await conn.execute(rules.STAGE_SUBJECTS)
        await conn.execute(rules.LOCK_SUBJECTS)
        await conn.execute(rules.FIND_DETHRONED)
        await conn.execute(rules.MARK_SUBJECT_DUPLICATES)
        await conn.execute(rules.UPSERT_SUBJECT_WINNERS)
    conflicts: list[Unappliable] = []
    # Only a batch with repeats pays for sorting them. After the citizens' locks: a
    # repeat's count locks its stored row, which another transaction dethroning it (under
    # the citizen's lock) must update too; counted before this one's citizens were locked,
    # two parts of a round deadlocked, one holding the row and waiting for a citizen the
    # other held while it waited for the row.
    if new_events < await conn.fetchval("SELECT count(*) FROM batch_in"):
        conflicts = _unappliable(await conn.fetch(batch.SORT_REPEATS))
    if new_events == 0:
        return BatchOutcome(0, [], conflicts)
    await conn.execute(rules.SELECT_APPLIED, list(unusable))
    await conn.execute(batch.ENSURE_PROGRESS_ROWS)
    await conn.execute(batch.GROUP_KEYS)
    if await conn.fetchval(batch.ANALYZE_WORTH):
        await conn.execute(batch.ANALYZE_BATCH)
    await conn.execute(rules.UPDATE_SNAPSHOTS)
    await conn.execute(rules.RECOUNT_AFTER_SNAPSHOT)
    # the day changes computed before the spread takes the ancestors' rows (`rollups`)
    await rollups.stage_days(conn)
    changed = list(await conn.fetch(batch.SPREAD))
    await rollups.apply_days(conn)
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM batch_applied WHERE adjustment)"):
        await conn.execute(rules.RELAST_OWN)
        await conn.execute(batch.RELAST_SUBTREES)
    if shared:
        for campaign_id in [r[0] for r in await conn.fetch(batch.SHARED_CAMPAIGNS)]:
            changed += await conn.fetch(batch.RECOMPUTE_VALUES, campaign_id)
    # last: after the spread's rows, which any transaction counting the same pairs waits
    # for first (`reach`); a version carried by shares moves figures no day holds
    await reach.mark_batch(conn, every_day=shared)
    keys = sorted({Key(r[0], r[1], r[2]) for r in changed})
    return BatchOutcome(new_events, keys, conflicts)


async def apply_events(conn: Connection, events: Sequence[Event]) -> BatchOutcome:
    """Apply events outside the consumer, in one transaction: the same statements as a
    consumed batch, without Kafka positions (a replay on simulated time, a test's world).
    Refuses an event whose unit or indicator is unknown."""
    await prepare(conn)
    async with conn.transaction():
        await stage(conn, [batch.staging_row(e, None, None) for e in events])
        unappliable = await take_unappliable(conn)
        if unappliable:
            raise ValueError(f"cannot apply: {unappliable[0].event_id}: {unappliable[0].reason}")
        # as the consumer decides it: a batch without repeated ids skips their sort
        return await apply(conn, distinct_ids=len({e.event_id for e in events}) == len(events))


async def reattribute(conn: Connection) -> int:
    """After a tree change: every stored event that may move attributed again to the
    version its sent code meant when it happened, by the rules a batch is staged with
    (`batch.ATTRIBUTE_*`); returns how many moved. An event no version takes keeps its
    key: nothing counted is dropped by a reload. The caller re-plans the campaigns."""
    await prepare(conn)
    await conn.execute(batch.STAGE_STORED_FOR_ATTRIBUTION)
    await conn.execute(batch.ATTRIBUTE_REUSED)
    await conn.execute(batch.ATTRIBUTE_RETIRED)
    moved: int = await conn.fetchval(batch.MOVE_REATTRIBUTED)
    await conn.execute("DELETE FROM batch_in")
    return moved


# -- recount: the counters again from the stored events ----------------------------------
async def recount(
    conn: Connection, campaign_id: str | None = None, unusable: Sequence[str] = ()
) -> None:
    """Rules 1, 3–5 from the stored events into the own columns of `progress`, for one
    campaign or (None) all of them but the `unusable` ones. Needs the campaign's progress
    rows. Rule 2 again is `rules.RECOUNT_SUBJECTS` (the rebuild's), rule 6 the caller's
    `RECOMPUTE_VALUES`, the day rollups `rollups.recount_days`."""
    statements = (
        rules.RECOUNT_RESET,
        rules.RECOUNT_SNAPSHOTS,
        rules.RECOUNT_INCREMENTS,
    )
    for statement in statements:
        await conn.execute(statement, campaign_id, list(unusable))


# -- as_of: a moment of the history ------------------------------------------------------
async def as_of(
    conn: Connection,
    campaign_id: str,
    indicators: Sequence[str],
    roots: Sequence[str],
    starts_at: datetime,
    at: datetime,
    *,
    tree_at: datetime | None = None,
) -> dict[tuple[str, str], ValueAt]:
    """The readers' `as_of` (the boards, the API, comparisons, briefings): rules 1–6 at `at`
    as `as_of_history` states them, read from the day rollups and at most one day of events
    per key (`as_of_days`) where they are kept, else from the history. A moment after the
    deadline is the deadline. What holds the counters against the history reads
    `as_of_history`."""
    deadline = await conn.fetchval("SELECT deadline FROM campaigns WHERE id = $1", campaign_id)
    if deadline is not None:
        at = min(at, deadline)
    days = await as_of_days.read(
        conn, campaign_id, indicators, roots, starts_at, at, tree_at=tree_at
    )
    if days is None:
        return await as_of_history(
            conn, campaign_id, indicators, roots, starts_at, at, tree_at=tree_at
        )
    found = {k: ValueAt(value, last) for k, (value, last) in days.figures.items()}
    if days.inexact:
        found.update(
            await as_of_history(
                conn, campaign_id, indicators, sorted(days.inexact), starts_at, at, tree_at=tree_at
            )
        )
    return found


async def as_of_history(
    conn: Connection,
    campaign_id: str,
    indicators: Sequence[str],
    roots: Sequence[str],
    starts_at: datetime,
    at: datetime,
    *,
    tree_at: datetime | None = None,
) -> dict[tuple[str, str], ValueAt]:
    """Rules 1–6 at `at` (at most the deadline) from the event history alone: each root's
    subtree value and last report per indicator, by (indicator, root), in one reading, on
    the tree in force at `at` (at least the start), or at `tree_at` when given (one
    campaign's figures on another's tree: a comparison across a cut-over). Independent of
    the counters and rollups: `tiendo check` holds them against it."""
    tree = tree_at if tree_at is not None else max(at, starts_at)
    rows = await conn.fetch(
        rules.VALUES_AS_OF, list(roots), campaign_id, list(indicators), starts_at, at, tree
    )
    return {(r["indicator"], r["root"]): ValueAt(r["value"], r["last_event_at"]) for r in rows}
