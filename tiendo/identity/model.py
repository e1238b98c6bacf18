"""Roles and scopes, as plain rules: who may call a route, and which units they see."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


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
