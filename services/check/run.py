"""`tiendo check` against a live deployment's database: live progress against `as_of` now
for every key, the notifier's open alerts against the board's statuses and the
briefing's bottom N, and the figures stored for the Grafana boards (`board_figures`)
against the board judged at the moment they were. Read only, in one snapshot per round;
then, given the aggregator replicas' `/metrics`, what each exports of a snapshot pass
against the rows the same pass stored. While a rebuild replays the events topic the
counters hold part of the events and those legitimately disagree: nothing is compared, and
the round says so (`Round.recounting`)."""

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from services.check import defaults
from services.check.compare import (
    BoardRow,
    Disagreement,
    WindowStart,
    alerts_vs_board,
    as_stored,
    board_vs_judgement,
    campaign_not_stored,
    figures_vs_board,
    live_vs_history,
    persistent,
    ranks_vs_board,
)
from services.check.metrics import (
    SNAPSHOT,
    Scrape,
    exported_moment,
    metrics_vs_board,
    parse_scrape,
)
from services.notifier.inputs import in_play
from services.notifier.policy import Policy, effective
from services.notifier.ranks import briefing_bottom
from services.notifier.repository import alerts as alert_sql
from services.notifier.repository import reference as reference_sql
from services.notifier.repository.alerts import AlertKey
from services.notifier.rules import Rule, briefing_slot, held, ranked_alerted
from services.notifier.settings import NotifierSettings
from tiendo.board import days
from tiendo.board import repository as board
from tiendo.board.campaign import Campaign, moving
from tiendo.board.figures import is_judged, judge_campaign
from tiendo.board.recounting import Recounting
from tiendo.counting import Key, ValueAt
from tiendo.database import Connection
from tiendo.pace import RUN_RATE_MIN_WINDOW, Progress, run_rate_window

# The history is read a little past the check's own clock: the host running it may be
# behind the aggregator's. The events table holds nothing ahead of the aggregator's clock
# (it holds such an event until its moment, docs/semantics.md "Events ahead of the
# clock"), so reading past now adds nothing the counters lack.
SKEW = timedelta(minutes=5)
JUDGED = (Rule.STALE, Rule.BEHIND, Rule.AT_RISK)
# How long the aggregator's snapshot reuses each unit's value one run-rate window ago.
WINDOW_MAX_AGE = timedelta(seconds=defaults.WINDOW_MAX_AGE_SECONDS)
# How long the second round waits for a snapshot newer than the first round's, when the
# first found stored figures to disagree with (a few of the aggregator's refreshes).
BOARD_WAIT = timedelta(seconds=120)
SELECT_BOARD_FIGURES = "SELECT * FROM board_figures"
# The deepest level the aggregator exports per-unit series of.
METRICS_UNIT_LEVEL = defaults.METRICS_UNIT_LEVEL
# How often a replica is scraped again while its snapshot is not the table's.
SCRAPE_EVERY = 0.5


@dataclass(frozen=True, slots=True)
class MetricsLook:
    """One replica's exported figures against the stored ones of the same pass."""

    url: str
    # the pass compared (its `judged_at`), None: not compared, `note` says why
    snapshot: datetime | None
    series: int
    disagreements: list[Disagreement]
    note: str = ""


@dataclass(frozen=True, slots=True)
class Round:
    keys: int
    alerts: int
    disagreements: list[Disagreement]
    # rows of board_figures compared, and the moment their snapshot judged (None: the
    # stored figures not compared, or none stored)
    board_rows: int = 0
    board_judged_at: datetime | None = None
    # the exported figures compared, one per replica scraped (None: no replica given)
    metrics: tuple[MetricsLook, ...] | None = None
    # a rebuild replaying the topic when the round looked: nothing was compared, since the
    # counters hold part of the events while the boards and alerts keep the figures of
    # before it (docs/check.md "While a rebuild replays")
    recounting: Recounting | None = None


async def _history(conn: Connection, campaign: Campaign, now: datetime) -> list[Disagreement]:
    codes = await board.codes_up_to_level(conn, 99)
    out: list[Disagreement] = []
    for indicator in campaign.indicators:
        counters = await board.counters_of(conn, campaign.id, indicator, codes)
        live = {c.unit: ValueAt(c.value, c.last_event_at) for c in counters}
        history = await board.values_as_of(
            conn,
            campaign.id,
            indicator,
            [c.unit for c in counters],
            campaign.starts_at,
            min(now + SKEW, campaign.deadline),
            # the history alone, not the rollups kept beside the counters it checks
            history=True,
        )
        out.extend(live_vs_history(campaign.id, indicator, live, history))
    return out


async def _alerts(
    conn: Connection,
    campaign: Campaign,
    policy: Policy,
    now: datetime,
    figures: dict[Key, Progress],
    running: set[Key],
) -> dict[AlertKey, bool]:
    verdicts = await judge_campaign(conn, campaign, now, live=True)
    enabled = policy.enabled()
    conditions: dict[AlertKey, bool] = {}
    for v in verdicts:
        figures[v.key] = v.progress
        if ranked_alerted(v, campaign, now):
            running.add(v.key)
        holds = held(v, campaign, now)
        for rule in JUDGED:
            if rule in enabled:
                conditions[AlertKey(v.key, rule.value)] = holds[rule]
    return conditions


async def _bottom(
    conn: Connection, campaign: Campaign, policy: Policy, now: datetime
) -> list[Key] | None:
    """The board's bottom N at the latest briefing (None: no briefing in the window)."""
    config = policy.bottom_rank
    if Rule.BOTTOM_RANK not in policy.enabled() or config.n <= 0 or campaign.ended(now):
        return None
    slot = briefing_slot(now, campaign.timezone, config.weekday, policy.briefing_time())
    if slot <= campaign.starts_at or slot > campaign.deadline:
        return None
    # the rule's own bottom N, on the level it ranks at that briefing
    found = await briefing_bottom(conn, campaign, slot, config.level, config.n)
    return [Key(campaign.id, b.unit, indicator) for indicator, f in found.items() for b in f.lowest]


async def _window_starts(
    conn: Connection, campaign: Campaign, at: datetime, max_age: timedelta
) -> dict[Key, WindowStart]:
    """Each judged key's value at the start of the run-rate window of `at` (what a fresh
    judgement reads), and the lowest and highest it had at the starts of the windows of the
    passes up to `max_age` before `at`, whose values the snapshot of `at` may have reused
    (`WindowValues.fresh`). None of a pass earlier than the window's first hour: it had no
    window, so kept nothing. Read from the day rollups with today's live values, as the
    snapshot reads them: within a local day the value is interpolated linearly and rounded,
    so over those few minutes of starts it takes every integer between its values at both
    ends and at any local midnight between them, and no other."""
    plan = campaign.plan(0, 0)
    window = run_rate_window(plan, at)
    if window is None:
        return {}

    def start(t: datetime) -> datetime:
        w = run_rate_window(plan, t)
        assert w is not None  # t is at least the window's first hour into the campaign
        return min(t, campaign.deadline) - w

    last = start(at)
    first = start(min(at, max(at - max_age, campaign.starts_at + RUN_RATE_MIN_WINDOW)))
    moments = [last, first]
    midnight = days.span(campaign, first).ends
    while first < midnight < last:
        moments.append(midnight)
        midnight = days.span(campaign, midnight).ends
    live: dict[str, dict[str, int]] = {}
    for c in await board.targeted(conn, campaign.id):
        if c.indicator in campaign.indicators:
            live.setdefault(c.indicator, {})[c.unit] = c.value
    values = [await days.values_at(conn, campaign, live, m) for m in moments]
    out: dict[Key, WindowStart] = {}
    for indicator, units in live.items():
        for unit in units:
            seen = [v[indicator][unit] for v in values]
            out[Key(campaign.id, unit, indicator)] = (seen[0], min(seen), max(seen))
    return out


async def _boards(
    conn: Connection,
    campaigns: dict[str, Campaign],
    waiting: set[str],
    window_max_age: timedelta,
) -> tuple[int, datetime | None, list[Disagreement]]:
    """`board_figures` against the board judged at the moment they were (`judged_at`):
    events applied after the snapshot, late ones included, are not a disagreement."""
    stored: dict[str, dict[Key, BoardRow]] = {}
    judged_at: dict[Key, datetime] = {}
    out: list[Disagreement] = []
    rows = await conn.fetch(SELECT_BOARD_FIGURES)
    for r in rows:
        key = Key(r["campaign_id"], r["unit"], r["indicator"])
        stored.setdefault(key.campaign_id, {})[key] = BoardRow.from_record(r)
        judged_at[key] = r["judged_at"]
    for campaign_id in sorted(stored.keys() - campaigns.keys() - waiting):
        # rows of a campaign nobody judges (one the aggregator cannot read as a campaign)
        for key, row in sorted(stored[campaign_id].items()):
            out.append(
                Disagreement.on(
                    "board_unjudged", key, f"in board_figures (target {row.target}), no campaign"
                )
            )
    for campaign in campaigns.values():
        if campaign.id in waiting:
            continue
        mine = stored.get(campaign.id, {})
        if not mine:
            # judged keys are those with a target whatever the moment: no need to judge
            judged = [
                c
                for c in await board.targeted(conn, campaign.id)
                if c.indicator in campaign.indicators and is_judged(c.target)
            ]
            if judged:
                out.append(campaign_not_stored(campaign.id, len(judged)))
            continue
        # one snapshot writes one moment; rows of another are a snapshot written by halves
        at = max(judged_at[k] for k in mine)
        for key in sorted(k for k in mine if judged_at[k] != at):
            out.append(
                Disagreement.on(
                    "board_figures",
                    key,
                    f"judged_at: stored {judged_at[key].isoformat()}, "
                    f"the campaign's other rows {at.isoformat()}",
                    shown=f"judged_at {judged_at[key].isoformat()}",
                )
            )
        # judged from the history at `at` (the boards' `as_of`), with the run-rate window
        # start values read afresh (no cache), then allowed the snapshot's reuse
        verdicts = await judge_campaign(conn, campaign, at, live=False)
        window = await _window_starts(conn, campaign, at, window_max_age)
        out += board_vs_judgement(mine, as_stored(campaign, verdicts, at, mine, window))
    moment = max(judged_at.values()) if judged_at else None
    return len(rows), moment, out


async def check_round(
    conn: Connection,
    settings: NotifierSettings,
    now: datetime,
    *,
    alerts: bool = True,
    boards: bool = False,
    window_max_age: timedelta = WINDOW_MAX_AGE,
) -> Round:
    """One consistent look (a repeatable-read snapshot) at the whole state; `alerts`
    False: live against history only (a deployment without a notifier); `boards`: the
    stored board figures too (a deployment whose aggregator runs its snapshot pass;
    `window_max_age`: its METRICS_WINDOW_REFRESH_SECONDS)."""
    disagreements: list[Disagreement] = []
    board_rows, board_judged_at = 0, None
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # in the same snapshot as the rest: the rebuild marks itself in the transaction
        # that resets the counters, and stops being one once the stored offsets reach the
        # ends, so a snapshot without it holds no partial replay
        recounting = await board.recount_in_progress(conn)
        if recounting is not None:
            return Round(0, 0, [], recounting=recounting)
        # a campaign whose counters wait to be moved onto the tree it reports on now is
        # not compared: nobody reads them meanwhile, and the notifier waits for it too
        # (docs/units-over-time.md "The moment of a cut-over")
        campaigns = await board.campaigns(conn)
        waiting = moving(campaigns.values(), now)
        campaigns = {c: campaign for c, campaign in campaigns.items() if c not in waiting}
        overrides = await reference_sql.policies(conn)
        open_rows = {
            k: r
            for k, r in (await alert_sql.open_alerts(conn, None)).items()
            if k.key.campaign_id not in waiting
        }
        open_alerts = {k: r["state"] for k, r in open_rows.items()}
        conditions: dict[AlertKey, bool] = {}
        figures: dict[Key, Progress] = {}
        for campaign in campaigns.values():
            disagreements += await _history(conn, campaign, now)
            if not alerts or not in_play(campaign, now):
                continue
            policy = effective(settings, overrides.get(campaign.id, {}))
            running: set[Key] = set()
            conditions.update(await _alerts(conn, campaign, policy, now, figures, running))
            expected = await _bottom(conn, campaign, policy, now)
            if expected is not None:
                # the briefing's bottom N, of the keys whose target still runs: past a
                # unit's own deadline, or once the unit is done, its rank alert is closed
                # (`rules.ranked_alerted`)
                expected = [k for k in expected if k in running]
            firing = [
                k.key
                for k, state in open_alerts.items()
                if k.key.campaign_id == campaign.id
                and k.rule == Rule.BOTTOM_RANK.value
                and state == "firing"
            ]
            if expected is not None:
                disagreements += ranks_vs_board(expected, firing)
        # bottom_rank is compared above, against the briefing's leaderboard
        others = {k: s for k, s in open_alerts.items() if k.rule != Rule.BOTTOM_RANK.value}
        if alerts:
            disagreements += alerts_vs_board(conditions, others)
            disagreements += figures_vs_board(
                figures, {k: _details(r["details"]) for k, r in open_rows.items()}
            )
        if boards:
            board_rows, board_judged_at, found = await _boards(
                conn, campaigns, waiting, window_max_age
            )
            disagreements += found
    return Round(len(figures), len(open_alerts), sorted(disagreements), board_rows, board_judged_at)


def _details(raw: Any) -> dict[str, Any]:
    details: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else dict(raw)
    return details


async def _snapshot_moment(conn: Connection) -> datetime | None:
    moment: datetime | None = await conn.fetchval("SELECT max(judged_at) FROM board_figures")
    return moment


async def check(
    dsn: str,
    settings: NotifierSettings,
    settle: float,
    now: datetime,
    *,
    boards: bool = False,
    window_max_age: timedelta = WINDOW_MAX_AGE,
    board_wait: timedelta = BOARD_WAIT,
    metrics_urls: Sequence[str] = (),
    metrics_level: int = METRICS_UNIT_LEVEL,
    scrape: "ScrapeFn | None" = None,
) -> Round:
    """Two rounds `settle` seconds apart; only what both see is reported (a change the
    notifier had not judged yet when the first round looked is its lag, not a fault).

    With `boards`, a stored figure the first round disagreed with may be the snapshot
    racing the events (one applied after the snapshot read the counters, dated before its
    moment): the second round therefore compares a newer snapshot, waiting up to
    `board_wait` past the settle for one; if none comes, the boards are frozen, and that
    is said (`board_stale`) beside what both rounds saw.

    With `metrics_urls` (one per aggregator replica), each replica's exported figures are
    then compared with the stored ones of its own pass (`compare_metrics`), all replicas
    at once, each given up to `board_wait` to meet the table."""
    conn = await asyncpg.connect(dsn)
    try:
        result = await _rounds(conn, settings, settle, now, boards, window_max_age, board_wait)
    finally:
        await conn.close()
    if not metrics_urls or result.recounting is not None:
        return result

    async def one(url: str) -> MetricsLook:
        conn = await asyncpg.connect(dsn)
        try:
            return await compare_metrics(
                conn, url, metrics_level, board_wait, scrape or scrape_http
            )
        finally:
            await conn.close()

    looks = tuple(await asyncio.gather(*(one(url) for url in metrics_urls)))
    found = [d for look in looks for d in look.disagreements]
    return replace(result, disagreements=result.disagreements + sorted(found), metrics=looks)


async def _rounds(
    conn: Connection,
    settings: NotifierSettings,
    settle: float,
    now: datetime,
    boards: bool,
    window_max_age: timedelta,
    board_wait: timedelta,
) -> Round:
    first = await check_round(conn, settings, now, boards=boards, window_max_age=window_max_age)
    if first.recounting is not None or not first.disagreements or settle <= 0:
        return first
    clock = asyncio.get_running_loop().time
    began = clock()
    await asyncio.sleep(settle)
    stale: list[Disagreement] = []
    on_boards = any(d.kind.startswith("board_") for d in first.disagreements)
    if boards and on_boards and first.board_judged_at is not None:
        until = clock() + board_wait.total_seconds()
        while await _snapshot_moment(conn) == first.board_judged_at:
            if await board.recount_in_progress(conn) is not None:
                # a rebuild began: no snapshot comes until it ends (the second round
                # says so), and the boards are not frozen by a fault
                break
            if clock() >= until:
                stale.append(
                    Disagreement(
                        "board_stale",
                        "*",
                        "*",
                        "*",
                        f"board_figures judged at {first.board_judged_at.isoformat()}, "
                        f"not rewritten in {clock() - began:.0f} s",
                    )
                )
                break
            await asyncio.sleep(1.0)
    waited = timedelta(seconds=clock() - began)
    second = await check_round(
        conn, settings, now + waited, boards=boards, window_max_age=window_max_age
    )
    if second.recounting is not None:
        # the first round's disagreements have no second look to confirm them until the
        # rebuild ends: said as the rebuild, not printed as found
        return second
    return Round(
        second.keys,
        second.alerts,
        stale + persistent(first.disagreements, second.disagreements),
        second.board_rows,
        second.board_judged_at,
    )


# -- the exported figures (`/metrics`) against the stored ones -------------------------

# text of one scrape of a URL (raises httpx.HTTPError when it fails)
ScrapeFn = Callable[[str], Awaitable[str]]


async def scrape_http(url: str) -> str:
    """GET `url` (an aggregator's `/metrics`)."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await client.get(url)
        response.raise_for_status()
        return response.text


async def compare_metrics(
    conn: Connection,
    url: str,
    max_level: int,
    wait: timedelta,
    scrape: ScrapeFn = scrape_http,
    every: float = SCRAPE_EVERY,
) -> MetricsLook:
    """One replica's exported figures against `board_figures`, once the scrape's snapshot
    is the table's: the replica writes the table, then publishes the pass's metrics, so a
    scrape is followed by a read of the table, and compared only if the table's
    `judged_at` is the scrape's `tiendo_aggregator_unit_snapshot_timestamp_seconds` (same
    pass, same verdicts: exact, no race). Otherwise (the replica has not published its
    last write yet, or another replica has rewritten the table since: replicas take
    turns) it scrapes again every `every` seconds for up to `wait`; if they never meet,
    nothing is compared and `note` says so. A scrape that fails is tried again too."""
    clock = asyncio.get_running_loop().time
    until = clock() + wait.total_seconds()
    tries = 0
    while True:
        tries += 1
        try:
            found: Scrape | None = parse_scrape(await scrape(url))
            why = ""
        except (httpx.HTTPError, OSError, ValueError) as e:
            found, why = None, f"the scrape failed ({type(e).__name__}: {e})"
        if found is not None:
            look = await _against_table(conn, url, found, max_level)
            if look.snapshot is not None:
                return look
            why = look.note
        if clock() >= until:
            return MetricsLook(
                url,
                None,
                0,
                [],
                f"not the table's pass in {tries} scrapes over {wait.total_seconds():g} s: {why}",
            )
        await asyncio.sleep(every)


async def _against_table(conn: Connection, url: str, scrape: Scrape, max_level: int) -> MetricsLook:
    """`scrape` against the table as it is now, if it holds the scrape's pass."""
    if scrape.taken_at is None:
        return MetricsLook(url, None, 0, [], f"no {SNAPSHOT} in the scrape (no pass yet)")
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # one pass writes one moment (rows of another are the fourth comparison's to name)
        judged_at = await _snapshot_moment(conn)
        if judged_at is None or exported_moment(judged_at) != scrape.taken_at:
            table = "empty" if judged_at is None else f"judged at {judged_at.isoformat()}"
            return MetricsLook(
                url,
                None,
                0,
                [],
                f"last scrape's snapshot {_moment(scrape.taken_at)}, board_figures {table}",
            )
        rows = await conn.fetch(SELECT_BOARD_FIGURES)
    stored = {
        Key(r["campaign_id"], r["unit"], r["indicator"]): BoardRow.from_record(r) for r in rows
    }
    found = metrics_vs_board(scrape, stored, max_level, url)
    return MetricsLook(url, judged_at, scrape.series, found)


def _moment(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()
