"""Roles and scopes, as plain rules: who may call a route, and which units they see."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tiendo.unit_keys import TREE_ZONE, admin_code_of


class Role(StrEnum):
    """What an identity is for (docs/access.md has each route's role)."""

    reader = "reader"  # progress, leaderboards, alerts, notifications of a unit subtree
    admin = "admin"  # reference data, campaigns, targets, policies, silences, identities
    auditor = "auditor"  # the audit log
    ingest = "ingest"  # upstream systems sending events (ingest's own tokens)


# Roles whose scope is always every unit: an administrator changes the whole tree, an
# auditor reads every change; only readers are bound to a subtree.
WIDE_ROLES = frozenset({Role.admin, Role.auditor})


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified caller. `units` are subtree roots (empty: every unit); `valid_until` is set
    for a rotated-out secret in its grace period."""

    name: str
    role: Role
    units: frozenset[str]
    valid_until: datetime | None = None

    @property
    def everywhere(self) -> bool:
        return not self.units

    def sees(self, code: str, ancestors: Iterable[str]) -> bool:
        """Whether the unit `code` (with its `ancestors`) lies inside this identity's scope."""
        return covers(self.units, code, ancestors)

    def scope(self) -> list[str] | None:
        """The subtree roots for a SQL filter, None when it sees every unit."""
        return None if self.everywhere else sorted(self.units)


def covers(roots: frozenset[str], code: str, ancestors: Iterable[str]) -> bool:
    """A unit is inside a scope when the scope is everything, names it, or names one of its
    ancestors (a scope grants whole subtrees)."""
    return not roots or code in roots or any(a in roots for a in ancestors)


def scope_problems(role: Role, units: Iterable[str], all_units: bool) -> list[str]:
    """Why an identity of `role` with this scope may not be issued (empty: it may)."""
    roots = list(units)
    if role is Role.ingest:
        return ["ingest tokens are issued with `tiendo ingest token-create`"]
    if role in WIDE_ROLES and roots:
        return [f"a {role} sees every unit: give no --units"]
    if role is Role.reader and not roots and not all_units:
        # an empty list means everything: make that a choice, never an omission
        return ["a reader needs --units CODE… (or --all-units for HQ)"]
    if role is Role.reader and roots and all_units:
        return ["give --units or --all-units, not both"]
    return []


def permitted(identity: Identity, roles: frozenset[Role]) -> bool:
    """Whether the identity's role is one a route accepts."""
    return identity.role in roles


@dataclass(frozen=True, slots=True)
class NamedUnit:
    """What a name given for a reader's scope found on the tree at a moment
    (`repository.units_named`): the version it names, if any, and that version's period."""

    name: str
    key: str | None = None
    unit_name: str | None = None
    in_force: bool = False
    valid_from: datetime | None = None  # None: since before anything known
    valid_to: datetime | None = None  # None: still in force


@dataclass(frozen=True, slots=True)
class ReadScope:
    """A reader's scope as version keys, each with its unit's name, or why it is refused."""

    names: dict[str, str]  # key -> the unit's name, in the order given
    problems: tuple[str, ...]

    @property
    def keys(self) -> list[str]:
        return list(self.names)


def read_scope(found: Sequence[NamedUnit], at: datetime) -> ReadScope:
    """The version keys a reader's scope names at `at`: a version's key (`00004@2025-07-01`)
    names exactly that version, in force or not; an official code names its version in force
    at `at`, and is refused when none is. A scope is matched by key alone (`covers`): a code
    read as the version it once keyed would bind a retired unit (Phường Trúc Bạch for
    `00004` after 1 July 2025) instead of the one the code names now."""
    names: dict[str, str] = {}
    unknown: list[str] = []
    problems: list[str] = []
    for f in found:
        if f.key is None:
            unknown.append(f.name)
        elif admin_code_of(f.name) != f.name or f.in_force:
            names[f.key] = f.unit_name or f.key
        else:
            problems.append(_not_in_force(f, at))
    if unknown:
        problems.insert(0, f"unknown unit code(s): {', '.join(unknown)}")
    return ReadScope(names, tuple(problems))


def _not_in_force(f: NamedUnit, at: datetime) -> str:
    if f.valid_to is not None and f.valid_to <= at:
        when = f"closed on {f.valid_to.astimezone(TREE_ZONE).date().isoformat()}"
    else:
        start = f.valid_from.astimezone(TREE_ZONE).date().isoformat() if f.valid_from else "?"
        when = f"comes into force on {start}"
    # A code's first version is keyed by the bare code, so once closed it cannot be named
    # apart from the code: say so, or the operator retries the same text.
    return (
        f"official code {f.name} names no unit in force: {f.unit_name} (key {f.key}) {when}. "
        "A reader's scope takes an official code in force, or a later version's key "
        "CODE@DAY; a closed version keyed by its bare code cannot be a scope"
    )
