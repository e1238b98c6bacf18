"""Loading a tree version (docs/units-over-time.md "Loading a tree version"): pure.

`plan_version` takes the versions already stored, the new tree (the whole tree in force
from a day) and its crosswalk, and returns either what to write (versions continued,
closed, opened, and the transfers) or every bad row with its line. Nothing here reads the
database or the clock, so the CLI's checks, the admin API and the tests share one rule.

Rows carry a `line`: their line in the file for the CLI, their index in the list for the
API. An error names which list it is about (`units` or `crosswalk`) and the line; an error
about something no row states (a closed version the crosswalk forgets) has no line.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from tiendo.sheets import normal_text
from tiendo.unit_keys import TREE_ZONE, admin_code_of, cut_over, version_key

__all__ = ["TREE_ZONE", "admin_code_of", "cut_over", "plan_version", "version_key"]

DEFAULT_GRACE_DAYS = 90
Transfer = Literal["whole", "part"]
Source = Literal["units", "crosswalk"]


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """A version already loaded. `valid_from` None: since before anything tiendo knows."""

    key: str
    admin_code: str
    name: str
    type: str
    level: int
    parent_key: str | None
    valid_from: datetime | None = None
    valid_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class TreeRow:
    """A unit of the new tree as the file states it (official codes)."""

    line: int
    code: str
    name: str
    type: str
    level: int
    parent_code: str | None


@dataclass(frozen=True, slots=True)
class CrosswalkRow:
    """Where (part of) an old unit went: `old_code` read the day before the cut-over,
    `new_code` in the new tree."""

    line: int
    old_code: str
    new_code: str
    transfer: Transfer
    share: Decimal | None = None


@dataclass(frozen=True, slots=True, order=True)
class TreeError:
    source: Source
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.source} line {self.line}" if self.line is not None else self.source
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class NewVersion:
    key: str
    admin_code: str
    name: str
    type: str
    level: int
    parent_key: str | None


@dataclass(frozen=True, slots=True)
class Closing:
    key: str
    # set when the version went whole into one successor: its code is still accepted
    # for events until then
    grace_until: datetime | None


@dataclass(frozen=True, slots=True)
class TransferOut:
    old_key: str
    new_key: str
    transfer: Transfer
    share: Decimal | None


@dataclass(frozen=True, slots=True)
class VersionPlan:
    """What loading the tree writes: every version closed at `at`, every one opened from
    `at`, the crosswalk in keys; `continued` keys stay as they are."""

    at: datetime
    continued: tuple[str, ...] = ()
    closed: tuple[Closing, ...] = ()
    opened: tuple[NewVersion, ...] = ()
    transfers: tuple[TransferOut, ...] = field(default_factory=tuple)


def plan_version(
    stored: Iterable[StoredVersion],
    rows: Sequence[TreeRow],
    crosswalk: Sequence[CrosswalkRow],
    day: date,
    grace_days: int = DEFAULT_GRACE_DAYS,
) -> VersionPlan | list[TreeError]:
    """The plan of loading `rows` as the tree in force from `day`, or every error."""
    at = cut_over(day)
    versions = list(stored)
    errors = _overlaps(versions, rows, at)
    errors += _tree_errors(rows)
    in_force = {v.admin_code: v for v in versions if v.valid_to is None}
    new_codes = {r.code for r in rows}
    parents = {v.parent_key for v in in_force.values()}
    errors += _crosswalk_errors(crosswalk, in_force, new_codes)
    moved = {c.old_code for c in crosswalk}
    errors.extend(
        TreeError(
            "crosswalk",
            None,
            f"{v.admin_code} ({v.name}) is not in the new tree and no crosswalk row says "
            "where it went",
        )
        for v in in_force.values()
        if v.admin_code not in new_codes and v.admin_code not in moved and v.key not in parents
    )
    if errors:
        return sorted(errors, key=_order)

    by_code = {r.code: r for r in rows}
    keys: dict[str, str] = {}  # new tree: official code -> version key
    continued: set[str] = set()
    used = {v.admin_code for v in versions}

    def key_of(row: TreeRow) -> str:
        # parents first: a unit continues only under the very version of its parent; names
        # compare as NFC (`normal_text`): the same tree saved on a Mac continues every
        # version, even one stored before names were normalised
        if row.code in keys:
            return keys[row.code]
        parent_key = key_of(by_code[row.parent_code]) if row.parent_code else None
        before = in_force.get(row.code)
        if (
            before is not None
            and row.code not in moved
            and (normal_text(before.name), normal_text(before.type), before.level)
            == (normal_text(row.name), normal_text(row.type), row.level)
            and before.parent_key == parent_key
        ):
            continued.add(before.key)
            keys[row.code] = before.key
        else:
            keys[row.code] = version_key(row.code, day) if row.code in used else row.code
        return keys[row.code]

    for row in rows:
        key_of(row)
    opened = tuple(
        NewVersion(keys[r.code], r.code, r.name, r.type, r.level, keys.get(r.parent_code or ""))
        for r in rows
        if keys[r.code] not in continued
    )

    transfers: list[TransferOut] = []
    for c in crosswalk:
        old = in_force[c.old_code].key
        transfers.append(TransferOut(old, keys[c.new_code], c.transfer, c.share))
    closing = [v for v in versions if v.valid_to is None and v.key not in continued]
    for v in closing:
        if v.admin_code not in moved and v.admin_code in keys:
            # the same identity under a new name, parent or level: an implicit whole
            transfers.append(TransferOut(v.key, keys[v.admin_code], "whole", None))
    transfers.extend(_abolished(closing, transfers))
    whole = {t.old_key for t in transfers if t.transfer == "whole"}
    grace = at + timedelta(days=grace_days)
    closed = tuple(Closing(v.key, grace if v.key in whole else None) for v in closing)
    return VersionPlan(
        at=at,
        continued=tuple(sorted(continued)),
        closed=closed,
        opened=opened,
        transfers=tuple(transfers),
    )


def _abolished(closing: Sequence[StoredVersion], given: Sequence[TransferOut]) -> list[TransferOut]:
    """Transfers of the closed units no row names that have children (a level abolished,
    as Hà Nội's districts on 1 July 2025): their people went where their children's went,
    in shares nobody stated, so their own figures stay above every successor."""
    out: dict[str, set[str]] = defaultdict(set)
    for t in given:
        out[t.old_key].add(t.new_key)
    children: dict[str, list[str]] = defaultdict(list)
    for v in closing:
        if v.parent_key is not None:
            children[v.parent_key].append(v.key)

    def reached(key: str) -> set[str]:
        if key not in out:
            out[key] = set().union(*(reached(c) for c in children[key]))
        return out[key]

    derived: list[TransferOut] = []
    for v in closing:
        if v.key in out:
            continue
        successors = sorted(reached(v.key))
        transfer: Transfer = "whole" if len(successors) == 1 else "part"
        derived.extend(TransferOut(v.key, s, transfer, None) for s in successors)
    return derived


def _order(e: TreeError) -> tuple[str, int, str]:
    return (e.source, -1 if e.line is None else e.line, e.message)


def _overlaps(
    versions: Sequence[StoredVersion], rows: Sequence[TreeRow], at: datetime
) -> list[TreeError]:
    """A tree for a day no later than one already loaded would rewrite what was true."""
    later = [
        v
        for v in versions
        if (v.valid_from is not None and v.valid_from >= at)
        or (v.valid_to is not None and v.valid_to > at)
    ]
    latest = latest_cut_over(later)
    if latest is None:
        return []
    overlapped = {v.admin_code for v in later}
    errors = [
        TreeError(
            "units",
            r.line,
            f"{r.code} already has a version from {latest.astimezone(TREE_ZONE):%Y-%m-%d}, "
            "later than or on this tree's day",
        )
        for r in rows
        if r.code in overlapped
    ]
    if not errors:
        errors.append(
            TreeError(
                "units",
                None,
                f"a tree from {latest.astimezone(TREE_ZONE):%Y-%m-%d} is already loaded; "
                "trees are loaded in the order of their days",
            )
        )
    return errors


def latest_cut_over(versions: Iterable[StoredVersion]) -> datetime | None:
    """The latest moment a stored version begins or ends at."""
    moments = [m for v in versions for m in (v.valid_from, v.valid_to) if m is not None]
    return max(moments, default=None)


def _tree_errors(rows: Sequence[TreeRow]) -> list[TreeError]:
    """Repeated codes, missing parents, levels that do not follow, cycles."""
    errors: list[TreeError] = []
    first: dict[str, int] = {}
    for r in rows:
        if r.code in first:
            errors.append(TreeError("units", r.line, f"code {r.code} repeats line {first[r.code]}"))
        first.setdefault(r.code, r.line)
    by_code = {r.code: r for r in rows}
    for r in rows:
        if (r.level == 1) != (r.parent_code is None):
            errors.append(
                TreeError("units", r.line, "level 1 units have no parent; every other unit has one")
            )
            continue
        if r.parent_code is None:
            continue
        parent = by_code.get(r.parent_code)
        if parent is None:
            errors.append(
                TreeError("units", r.line, f"parent {r.parent_code} is not a unit of this tree")
            )
        elif parent.level != r.level - 1:
            errors.append(
                TreeError(
                    "units",
                    r.line,
                    f"level {r.level} under a level {parent.level} parent {parent.code}",
                )
            )
    errors.extend(
        TreeError("units", by_code[c].line, f"{c} is its own ancestor (a cycle)")
        for c in _in_cycles(by_code)
    )
    return errors


def _in_cycles(by_code: Mapping[str, TreeRow]) -> list[str]:
    """Codes whose parent chain comes back to them."""
    looping: list[str] = []
    for code in by_code:
        seen: set[str] = set()
        at: str | None = code
        while at is not None and at in by_code and at not in seen:
            seen.add(at)
            at = by_code[at].parent_code
        if at == code:
            looping.append(code)
    return looping


def _crosswalk_errors(
    crosswalk: Sequence[CrosswalkRow], in_force: Mapping[str, StoredVersion], new: set[str]
) -> list[TreeError]:
    errors: list[TreeError] = []
    seen: dict[tuple[str, str], int] = {}
    groups: dict[str, list[CrosswalkRow]] = defaultdict(list)
    for c in crosswalk:
        if c.old_code not in in_force:
            errors.append(
                TreeError(
                    "crosswalk", c.line, f"old code {c.old_code} is not a unit the day before"
                )
            )
        if c.new_code not in new:
            errors.append(
                TreeError(
                    "crosswalk", c.line, f"new code {c.new_code} is not a unit of the new tree"
                )
            )
        pair = (c.old_code, c.new_code)
        if pair in seen:
            errors.append(
                TreeError(
                    "crosswalk", c.line, f"{c.old_code} → {c.new_code} repeats line {seen[pair]}"
                )
            )
        seen.setdefault(pair, c.line)
        if c.share is not None and not Decimal(0) < c.share <= Decimal(1):
            errors.append(TreeError("crosswalk", c.line, "a share must be in (0, 1]"))
        if c.transfer == "whole" and c.share not in (None, Decimal(1)):
            errors.append(TreeError("crosswalk", c.line, "a whole transfer takes no share"))
        groups[c.old_code].append(c)
    for old, group in groups.items():
        errors.extend(_group_errors(old, group))
    return errors


def _group_errors(old: str, group: list[CrosswalkRow]) -> list[TreeError]:
    """One old unit's rows: one whole, or parts whose shares are all given (summing to 1)
    or all empty."""
    successors = len({c.new_code for c in group})
    if any(c.transfer == "whole" for c in group):
        if successors > 1:
            return [
                TreeError(
                    "crosswalk",
                    c.line,
                    f"{old} goes whole to {successors} successors; a whole transfer has one",
                )
                for c in group
            ]
        return []
    shares = [c.share for c in group]
    given = [s for s in shares if s is not None]
    if given and len(given) < len(shares):
        return [
            TreeError("crosswalk", c.line, f"{old}'s shares mix given and empty ones")
            for c in group
        ]
    total = sum(given, Decimal(0))
    if given and total != 1:
        return [
            TreeError("crosswalk", c.line, f"{old}'s shares sum to {total}, not 1") for c in group
        ]
    return []


def applied(stored: Iterable[StoredVersion], plan: VersionPlan) -> list[StoredVersion]:
    """The versions once `plan` is written: what the database holds after the load (the
    repository writes the same), for chaining loads without one."""
    closing = {c.key for c in plan.closed}
    out = [
        StoredVersion(
            v.key,
            v.admin_code,
            v.name,
            v.type,
            v.level,
            v.parent_key,
            v.valid_from,
            plan.at if v.key in closing else v.valid_to,
        )
        for v in stored
    ]
    out.extend(
        StoredVersion(n.key, n.admin_code, n.name, n.type, n.level, n.parent_key, plan.at)
        for n in plan.opened
    )
    return out
