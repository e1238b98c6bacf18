"""What counts (docs/semantics.md), as pure functions: the reference model the counting SQL
of `tiendo/counting/` must equal.

Two forms of the same semantics:
- `own_values` computes every unit's own value at a moment from the full set of events;
- `Ledger` applies events one at a time, in any order, with any duplicates, the way the
  aggregator applies batches (latest snapshot + increments after it, subject dedup that
  moves the count when an earlier event arrives late). The property tests check that the
  two always agree; the end-to-end tests check the database against `own_values`.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction

from tiendo.counting.carry import allocate
from tiendo.event import Event, Kind
from tiendo.rollup import subtree_sums

Key = tuple[str, str]  # (unit, indicator)


@dataclass(frozen=True, slots=True)
class Window:
    """A campaign's counting window; events outside it are kept but do not count."""

    starts_at: datetime
    deadline: datetime

    def counts(self, at: datetime) -> bool:
        return self.starts_at <= at <= self.deadline


def _order(e: Event) -> tuple[datetime, str]:
    return (e.occurred_at, e.event_id)


def subject_winners(events: Iterable[Event]) -> set[str]:
    """event_ids of the earliest event of each (indicator, subject): the only ones counted."""
    first: dict[tuple[str, str], Event] = {}
    for e in events:
        if e.subject is None or e.kind is not Kind.INCREMENT:
            continue
        key = (e.indicator, e.subject)
        if key not in first or _order(e) < _order(first[key]):
            first[key] = e
    return {e.event_id for e in first.values()}


def counted(events: Iterable[Event]) -> list[Event]:
    """Distinct events (first of each event_id) minus subject duplicates."""
    unique: dict[str, Event] = {}
    for e in events:
        unique.setdefault(e.event_id, e)
    winners = subject_winners(unique.values())
    return [e for e in unique.values() if e.subject is None or e.event_id in winners]


def own_values(
    events: Iterable[Event], window: Window, baselines: Mapping[Key, int], at: datetime
) -> dict[Key, int]:
    """Each (unit, indicator)'s own value at `at` (clamped to the deadline), from scratch."""
    at = min(at, window.deadline)
    inside = [e for e in counted(events) if window.counts(e.occurred_at) and e.occurred_at <= at]
    latest: dict[Key, Event] = {}
    for e in inside:
        if e.kind is Kind.SNAPSHOT:
            key = (e.unit, e.indicator)
            if key not in latest or _order(e) > _order(latest[key]):
                latest[key] = e
    values: dict[Key, int] = dict(baselines)
    for key, snap in latest.items():
        values[key] = snap.value
    for e in inside:
        if e.kind is Kind.INCREMENT:
            key = (e.unit, e.indicator)
            covering = latest.get(key)
            if covering is None or e.occurred_at > covering.occurred_at:
                values[key] = values.get(key, 0) + e.value
    return values


def rolled_up(
    own: Mapping[Key, int], parents: Mapping[str, str | None], indicators: Iterable[str]
) -> dict[Key, int]:
    """Subtree values for every unit of the tree and each indicator."""
    out: dict[Key, int] = {}
    for indicator in indicators:
        totals = subtree_sums(parents, {u: v for (u, i), v in own.items() if i == indicator})
        out.update({(unit, indicator): v for unit, v in totals.items()})
    return out


@dataclass
class _Own:
    baseline: int = 0
    snapshot: Event | None = None
    increments_after: int = 0

    @property
    def value(self) -> int:
        base = self.snapshot.value if self.snapshot is not None else self.baseline
        return base + self.increments_after


@dataclass
class Ledger:
    """Incremental counting, event by event, as the aggregator does it (live, `at` = now).

    It keeps what the database keeps: every event once, the winner of each subject, and per
    (unit, indicator) the latest snapshot and the sum of counted increments after it.
    """

    window: Window
    baselines: Mapping[Key, int] = field(default_factory=dict)
    events: dict[str, Event] = field(default_factory=dict)
    counted_ids: set[str] = field(default_factory=set)
    winners: dict[tuple[str, str], Event] = field(default_factory=dict)
    own: dict[Key, _Own] = field(default_factory=dict)

    def _slot(self, key: Key) -> _Own:
        if key not in self.own:
            self.own[key] = _Own(baseline=self.baselines.get(key, 0))
        return self.own[key]

    def _count(self, e: Event, sign: int) -> None:
        """Add (or, sign −1, withdraw) a counted increment."""
        if not self.window.counts(e.occurred_at):
            return
        slot = self._slot((e.unit, e.indicator))
        if slot.snapshot is None or e.occurred_at > slot.snapshot.occurred_at:
            slot.increments_after += sign * e.value

    def apply(self, e: Event) -> bool:
        """Apply one delivery; False when its event_id was already applied."""
        if e.event_id in self.events:
            return False
        self.events[e.event_id] = e
        if e.kind is Kind.SNAPSHOT:
            self.counted_ids.add(e.event_id)
            if not self.window.counts(e.occurred_at):
                return True
            key = (e.unit, e.indicator)
            slot = self._slot(key)
            if slot.snapshot is None or _order(e) > _order(slot.snapshot):
                slot.snapshot = e
                slot.increments_after = sum(
                    x.value
                    for x in self.events.values()
                    if (x.unit, x.indicator) == key
                    and x.kind is Kind.INCREMENT
                    and x.event_id in self.counted_ids
                    and self.window.counts(x.occurred_at)
                    and x.occurred_at > e.occurred_at
                )
            return True
        if e.subject is not None:
            subject = (e.indicator, e.subject)
            previous = self.winners.get(subject)
            if previous is not None and _order(previous) < _order(e):
                return True  # a later duplicate of a counted subject
            if previous is not None:
                self.counted_ids.discard(previous.event_id)
                self._count(previous, -1)
            self.winners[subject] = e
        self.counted_ids.add(e.event_id)
        self._count(e, +1)
        return True

    def own_values(self) -> dict[Key, int]:
        values = dict(self.baselines)
        values.update({key: slot.value for key, slot in self.own.items()})
        return values


# -- units over time (docs/units-over-time.md) -------------------------------------------
@dataclass(frozen=True, slots=True)
class VersionOf:
    """One version of a unit: its parent (a key) and its period [valid_from, valid_to)."""

    parent: str | None
    admin_code: str
    valid_from: datetime | None = None  # None: since always
    valid_to: datetime | None = None
    grace_until: datetime | None = None

    def in_force(self, at: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= at) and (
            self.valid_to is None or at < self.valid_to
        )


@dataclass(frozen=True, slots=True)
class Successor:
    key: str
    share: Fraction | None  # None: `whole`, or a split without shares
    whole: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """An event that cannot be attributed: why (a dead letter)."""

    reason: str


@dataclass(frozen=True, slots=True)
class VersionedTree:
    """Every version of the tree and the crosswalk: the rules of carrying, in Python."""

    versions: Mapping[str, VersionOf]
    successors: Mapping[str, list[Successor]]

    def moment(self, at: datetime) -> datetime | None:
        """The latest boundary at or before `at` (None: since always)."""
        bounds = [
            b
            for v in self.versions.values()
            for b in (v.valid_from, v.valid_to)
            if b is not None and b <= at
        ]
        return max(bounds, default=None)

    def tree(self, at: datetime | None) -> dict[str, str | None]:
        """The versions in force at `at` (None: since always) and their parents."""
        return {
            k: v.parent
            for k, v in self.versions.items()
            if (at is None and v.valid_from is None) or (at is not None and v.in_force(at))
        }

    def attribute(self, code: str, at: datetime) -> str | Refused:
        """The key an event naming `code` at `at` counts for."""
        mine = [k for k, v in self.versions.items() if v.admin_code == code]
        for key in mine:
            if self.versions[key].in_force(at):
                return key
        closed = [k for k in mine if (to := self.versions[k].valid_to) is not None and to <= at]
        if not closed:
            return Refused(f"unknown unit {code}")
        key = max(closed, key=lambda k: self.versions[k].valid_to or at)
        grace = self.versions[key].grace_until
        while not self.versions[key].in_force(at):
            nexts = self.successors.get(key, [])
            if len(nexts) != 1 or not nexts[0].whole:
                return Refused(f"unit {code} was split into {', '.join(s.key for s in nexts)}")
            key = nexts[0].key
        if grace is None or at >= grace:
            return Refused(f"unknown unit {code}")
        return key

    def _landing(self, key: str, at: datetime | None) -> set[str]:
        if key in self.tree(at):
            return {key}
        return {u for s in self.successors.get(key, []) for u in self._landing(s.key, at)}

    def _lowest_common(self, units: set[str], at: datetime | None) -> str:
        parents = self.tree(at)

        def lineage(u: str) -> list[str]:
            out: list[str] = []
            node: str | None = u
            while node is not None:
                out.append(node)
                node = parents[node]
            return out[::-1]

        common = [lineage(u) for u in sorted(units)]
        lowest = common[0][0]
        for depth, code in enumerate(common[0]):
            if all(len(c) > depth and c[depth] == code for c in common):
                lowest = code
        return lowest

    def carry(self, own: Mapping[str, int], at: datetime | None) -> dict[str, int]:
        """Each version's own figure carried onto the tree of `at`: a version in force keeps
        it; a closed one's total (its own and what came into it) goes at its cut-over
        `whole` to its successor, by `allocate` over shares (successors by key), or, split
        without shares, to the lowest unit above all it reached; a version not yet in force
        carries nothing."""
        in_force = self.tree(at)
        totals: dict[str, int] = {}
        for key, value in own.items():
            v = self.versions[key]
            if key in in_force or (at is not None and (v.valid_from is None or v.valid_from <= at)):
                totals[key] = totals.get(key, 0) + value
        closed = sorted(
            (k for k, v in self.versions.items() if k not in in_force and v.valid_to),
            key=lambda k: (self.versions[k].valid_to, k),
        )
        for key in closed:
            to = self.versions[key].valid_to
            if at is None or to is None or to > at or key not in totals:
                continue
            total = totals.pop(key)
            nexts = sorted(self.successors.get(key, []), key=lambda s: s.key)
            if not nexts:
                continue
            if nexts[0].whole:
                totals[nexts[0].key] = totals.get(nexts[0].key, 0) + total
            elif all(s.share is not None for s in nexts):
                parts = allocate(total, [s.share or 0 for s in nexts])
                for s, part in zip(nexts, parts, strict=True):
                    totals[s.key] = totals.get(s.key, 0) + part
            else:
                lowest = self._lowest_common(self._landing(key, at), at)
                totals[lowest] = totals.get(lowest, 0) + total
        return {k: v for k, v in totals.items() if k in in_force}

    def rolled_up(
        self, own: Mapping[Key, int], at: datetime | None, indicators: Iterable[str]
    ) -> dict[Key, int]:
        """Subtree values of every unit of the tree of `at`, the closed versions carried."""
        parents = self.tree(at)
        out: dict[Key, int] = {}
        for indicator in indicators:
            landed = self.carry({u: v for (u, i), v in own.items() if i == indicator}, at)
            totals = subtree_sums(parents, landed)
            out.update({(unit, indicator): v for unit, v in totals.items()})
        return out
