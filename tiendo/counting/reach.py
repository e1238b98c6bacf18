"""How far back the day rollups changed: what tells a reader that keeps each unit's value one
run-rate window ago (`tiendo.board.window`) that a kept value is stale.

Such a value is read from the rollups (`tiendo.board.days`): the unit's live value less the
changes of the days after the window's start day D, and of D the part after the start. A
transaction that changes only days after D moves the live value and those changes alike,
and leaves it as it was; one that changes D or an earlier day (a report dated before the
window, a backfill, a device back after a week offline, a withdrawn citizen's winner of
then) moves it. So every transaction that writes the rollups counts itself in
`history_reach` under the earliest local day it changed, and in that day's `hours` under
the hour of it (`rules.local_hour`, laid out as the day rollups' hours), per (campaign,
indicator):

- the apply (`mark_batch`), one statement per batch, last in its transaction: the day of
  each (campaign, indicator)'s earliest event of the batch (withdrawn winners included,
  `batch_keys.first_at`); a batch that moves figures no day holds (a version carried by
  shares is recounted, not spread: `batch.BATCH_HAS_SHARED`) counts under '-infinity',
  every day;
- every re-plan (`mark_replanned`, from `rollups.recount_days`: admin changes, tree loads
  and their re-attribution, a cut-over's move, a rebuild's reset) rewrites every day of
  its campaign: '-infinity' too.

Those readers sum whole days. A briefing's stored ranking (the notifier's
`briefing_ranks`), of a moment in hour H of day D, sums the days up to D less D's writes of
the hours after H: a report whose earliest change is in a later hour of that day leaves it
(aggregator migration 022; a day's writes no hour holds count as of its start).

A reader reads the sum over the days up to D (`SELECT_REACHED`) *before* the counters and
rollups its values come from and keeps the values with it; a later pass reuses them only
while the sum it reads is the same, before its counters and again after them (a batch
committed in between is in their live values). A transaction committed after a read
grows the sum (rows only grow, and are never deleted), whether or not the values saw it;
one committed before is in the values (`tiendo.board.figures._window_ago`). Clock-free:
the days compared are the rollups' own, so simulated time and a reader's clock a little
off the aggregator's do not matter.

What it costs the apply: one statement over the batch's keys (not its events), under a
millisecond for a batch of 5,000 events (0.3 % of its time). It comes last, after every
other row the apply writes, its rows taken in one order (campaign, indicator), so a
transaction that holds one waits for nothing of another's: no deadlock. Nor does it add a
wait on a tree of one root (the country): two batches of one pair have both spread to its
row (`batch.SPREAD`), which the second waits for already.
"""

from datetime import date

from tiendo.counting.hours import hours_added, one_hour
from tiendo.counting.rules import local_day, local_hour
from tiendo.database import Connection

# The day a re-plan counts under: before every day, so every reader's sum holds it.
EVERY_DAY = "'-infinity'::date"

# apply: $1 true counts the batch under every day.
MARK_BATCH = f"""
INSERT INTO history_reach AS r (campaign_id, indicator, day, writes, hours)
SELECT k.campaign_id, k.indicator,
       CASE WHEN $1 THEN {EVERY_DAY} ELSE {local_day("k.first_at")} END, 1,
       CASE WHEN NOT $1 THEN {one_hour(local_hour("k.first_at"))} END
FROM (SELECT campaign_id, indicator, min(first_at) AS first_at
      FROM batch_keys GROUP BY 1, 2) k
JOIN campaigns c ON c.id = k.campaign_id
ORDER BY 1, 2
ON CONFLICT (campaign_id, indicator, day) DO UPDATE
SET writes = r.writes + 1,
    hours = CASE WHEN r.hours IS NULL THEN EXCLUDED.hours
                 WHEN EXCLUDED.hours IS NULL THEN r.hours
                 ELSE {hours_added("r.hours", "EXCLUDED.hours")} END
"""

# re-plan ($1: the campaign): every indicator it has counters of.
MARK_REPLANNED = f"""
INSERT INTO history_reach AS r (campaign_id, indicator, day, writes)
SELECT DISTINCT $1::text, p.indicator, {EVERY_DAY}, 1::bigint
FROM progress p
WHERE p.campaign_id = $1
ORDER BY 2
ON CONFLICT (campaign_id, indicator, day) DO UPDATE SET writes = r.writes + 1
"""

# readers: per indicator of campaign $1, the transactions that changed day $2 or earlier.
SELECT_REACHED = """
SELECT indicator, sum(writes)::bigint AS writes
FROM history_reach
WHERE campaign_id = $1 AND day <= $2
GROUP BY indicator
"""


async def mark_batch(conn: Connection, *, every_day: bool = False) -> None:
    """Count the applied batch (`batch_keys`) under each (campaign, indicator)'s earliest
    day it changed, or (`every_day`) under every day."""
    await conn.execute(MARK_BATCH, every_day)


async def mark_replanned(conn: Connection, campaign_id: str) -> None:
    """Count a re-plan of the campaign (its rollups rewritten) under every day."""
    await conn.execute(MARK_REPLANNED, campaign_id)


async def reached(conn: Connection, campaign_id: str, day: date) -> dict[str, int]:
    """Per indicator of the campaign, how many transactions changed its rollups on `day`
    or an earlier one (an indicator none did: missing)."""
    return {r[0]: r[1] for r in await conn.fetch(SELECT_REACHED, campaign_id, day)}
