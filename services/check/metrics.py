"""The aggregator's exported figures (`/metrics`) against the stored board figures
(`board_figures`) of the same snapshot pass: parsing a scrape and comparing it, as pure
functions over plain data (docs/check.md, "The exported figures").

Both come from one pass's verdicts (`services.aggregator.snapshot.unit_figures`), so once
the scrape's snapshot is the table's (`tiendo_aggregator_unit_snapshot_timestamp_seconds`
is the rows' `judged_at`) they are compared exactly: every figure as the exporter writes it
(`services.aggregator.metrics.UnitCollector`), the stored value converted the way the
exporter converts it (`float`, a moment to its POSIX seconds), against the parsed float."""

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from services.check.compare import BoardRow, Disagreement
from tiendo.counting import Key
from tiendo.pace import Status, is_done

SNAPSHOT = "tiendo_aggregator_unit_snapshot_timestamp_seconds"
# the per-unit gauges, labels campaign, unit, level, indicator (and status for the last),
# each with the board_figures field it exports; `tiendo_unit_events_today` (today's events)
# is not in board_figures and is not compared
VALUE = "tiendo_unit_value"
UNIT_GAUGES = (
    VALUE,
    "tiendo_unit_target",
    "tiendo_unit_expected",
    "tiendo_unit_pct",
    "tiendo_unit_pace",
    "tiendo_unit_projected_completion_timestamp_seconds",
    "tiendo_unit_last_event_timestamp_seconds",
    "tiendo_unit_status",
)
# per level, every level: labels campaign, level, indicator
UNITS, UNITS_DONE = "tiendo_units", "tiendo_units_done"

# (campaign, unit, level, indicator): the labels of one unit's series
UnitLabels = tuple[str, str, str, str]
# (gauge, status label or ""): one series of a unit
Series = tuple[str, str]
# (campaign, level, indicator)
LevelLabels = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Scrape:
    """What one scrape of an aggregator exported of the snapshot pass."""

    # the snapshot gauge's value (None: no pass since the replica started, or not an
    # aggregator's metrics)
    taken_at: float | None = None
    units: dict[UnitLabels, dict[Series, float]] = field(default_factory=dict)
    levels: dict[LevelLabels, dict[str, float]] = field(default_factory=dict)

    @property
    def series(self) -> int:
        return sum(map(len, self.units.values())) + sum(map(len, self.levels.values()))


def parse_scrape(text: str) -> Scrape:
    """The snapshot's series of a scrape (Prometheus text format); ValueError if it does
    not parse. Other series are ignored."""
    taken_at: float | None = None
    units: dict[UnitLabels, dict[Series, float]] = {}
    levels: dict[LevelLabels, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            try:
                if s.name == SNAPSHOT:
                    taken_at = float(s.value)
                elif s.name in UNIT_GAUGES:
                    at = (s.labels["campaign"], s.labels["unit"], s.labels["level"])
                    series = (s.name, s.labels.get("status", ""))
                    units.setdefault((*at, s.labels["indicator"]), {})[series] = float(s.value)
                elif s.name in (UNITS, UNITS_DONE):
                    of = (s.labels["campaign"], s.labels["level"], s.labels["indicator"])
                    levels.setdefault(of, {})[s.name] = float(s.value)
            except KeyError as e:
                raise ValueError(f"{s.name} without the label {e}") from e
    return Scrape(taken_at, units, levels)


def exported_moment(at: datetime) -> float:
    """A moment as the exporter writes it (`metrics._ts`): POSIX seconds, a float."""
    return at.astimezone(UTC).timestamp()


def exported(row: BoardRow) -> dict[Series, float]:
    """The series the exporter writes for a unit whose verdict stored `row`: a figure the
    row has none of (pct of a zero target, pace while nothing is expected, no projection,
    no event) is absent; the status is one series per status, 1 for the row's."""
    out: dict[Series, float] = {
        (VALUE, ""): float(row.value),
        ("tiendo_unit_target", ""): float(row.target),
        ("tiendo_unit_expected", ""): float(row.expected),
    }
    if row.pct is not None:
        out["tiendo_unit_pct", ""] = float(row.pct)
    if row.pace is not None:
        out["tiendo_unit_pace", ""] = float(row.pace)
    if row.projected_completion is not None:
        moment = exported_moment(row.projected_completion)
        out["tiendo_unit_projected_completion_timestamp_seconds", ""] = moment
    if row.last_event_at is not None:
        out["tiendo_unit_last_event_timestamp_seconds", ""] = exported_moment(row.last_event_at)
    for s in Status:
        out["tiendo_unit_status", s.value] = 1.0 if s.value == row.status else 0.0
    return out


def level_counts(rows: Iterable[tuple[Key, BoardRow]]) -> dict[LevelLabels, dict[str, float]]:
    """`tiendo_units` and `tiendo_units_done` as the exporter counts them from the pass's
    verdicts (`snapshot.level_counts`): of the stored rows, every level."""
    units: Counter[LevelLabels] = Counter()
    done: Counter[LevelLabels] = Counter()
    for key, row in rows:
        of = (key.campaign_id, str(row.level), key.indicator)
        units[of] += 1
        done[of] += is_done(row.value, row.target)
    return {of: {UNITS: float(n), UNITS_DONE: float(done[of])} for of, n in units.items()}


def metrics_vs_board(
    scrape: Scrape, stored: Mapping[Key, BoardRow], max_level: int, source: str = ""
) -> list[Disagreement]:
    """One scrape's series against the stored rows of the same pass, exactly.

    A row at or above the metrics level (`level <= max_level`; every row is of a judged
    key) with none of its unit's series is `metrics_missing` (a campaign with rows there
    and no series at all: one line, unit `*`); a unit's series without such a row is
    `metrics_unjudged`; a series whose value is not the row's, or one absent or present
    where the row says otherwise, is `metrics_figures`, as is a level count
    (`tiendo_units`, `_done`) that is not the stored rows' count. `source` (the replica
    scraped) ends every line."""
    where = f" ({source})" if source else ""
    out: list[Disagreement] = []
    want: dict[UnitLabels, tuple[Key, BoardRow]] = {
        (key.campaign_id, key.unit, str(row.level), key.indicator): (key, row)
        for key, row in stored.items()
        if row.level <= max_level
    }
    exported_campaigns = {labels[0] for labels in scrape.units}
    missing = Counter(labels[0] for labels in want.keys() - scrape.units.keys())
    whole = {c for c in missing if c not in exported_campaigns}
    for campaign in sorted(whole):
        out.append(
            Disagreement(
                "metrics_missing",
                campaign,
                "*",
                "*",
                f"{missing[campaign]} keys at level <= {max_level} in board_figures, "
                f"no tiendo_unit_* series of the campaign{where}",
            )
        )
    for labels in sorted(want.keys() - scrape.units.keys()):
        key, row = want[labels]
        if key.campaign_id not in whole:
            out.append(
                Disagreement.on(
                    "metrics_missing",
                    key,
                    f"in board_figures (level {row.level}, target {row.target}), "
                    f"no tiendo_unit_* series{where}",
                )
            )
    levels = {(k.campaign_id, k.unit, k.indicator): row.level for k, row in stored.items()}
    for labels in sorted(scrape.units.keys() - want.keys()):
        campaign, unit, level, indicator = labels
        stored_level = levels.get((campaign, unit, indicator))
        why = (
            "no row in board_figures"
            if stored_level is None
            else f"its board_figures row is of level {stored_level}"
            + (f", deeper than the metrics level {max_level}" if stored_level > max_level else "")
        )
        value = scrape.units[labels].get((VALUE, ""))
        out.append(
            Disagreement(
                "metrics_unjudged",
                campaign,
                unit,
                indicator,
                f"exported at level {level} (tiendo_unit_value {value}), {why}{where}",
            )
        )
    for labels in sorted(want.keys() & scrape.units.keys()):
        key, row = want[labels]
        have, should = scrape.units[labels], exported(row)
        for series in sorted(have.keys() | should.keys()):
            a, b = have.get(series), should.get(series)
            if not _same(a, b):
                name, status = series
                shown = f'{name}{{status="{status}"}}' if status else name
                out.append(
                    Disagreement.on(
                        "metrics_figures",
                        key,
                        f"{shown}: exported {_value(a)}, board_figures {_value(b)}"
                        f"{_stored(name, row)}{where}",
                    )
                )
    counts = level_counts(stored.items())
    for of in sorted(counts.keys() | scrape.levels.keys()):
        have_counts, should_counts = scrape.levels.get(of, {}), counts.get(of, {})
        campaign, level, indicator = of
        for name in (UNITS, UNITS_DONE):
            a, b = have_counts.get(name), should_counts.get(name)
            if not _same(a, b):
                out.append(
                    Disagreement(
                        "metrics_figures",
                        campaign,
                        "*",
                        indicator,
                        f'{name}{{level="{level}"}}: exported {_value(a)}, '
                        f"board_figures {_value(b)}{where}",
                    )
                )
    return out


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


def _value(x: float | None) -> str:
    return "nothing" if x is None else repr(x)


def _stored(name: str, row: BoardRow) -> str:
    """The stored figure behind a converted one, when it reads otherwise."""
    if name == "tiendo_unit_status":
        return f" (status {row.status!r})"
    if name == "tiendo_unit_projected_completion_timestamp_seconds":
        at = row.projected_completion
    elif name == "tiendo_unit_last_event_timestamp_seconds":
        at = row.last_event_at
    else:
        return ""
    return f" ({at.isoformat()})" if at is not None else ""
