"""Rollup of per-unit figures over a unit tree of any depth (contract §5). Pure functions."""

from collections.abc import Mapping


def children_of(parents: Mapping[str, str | None]) -> dict[str, list[str]]:
    """Children lists of a tree given as {code: parent code or None}."""
    children: dict[str, list[str]] = {code: [] for code in parents}
    for code, parent in parents.items():
        if parent is not None and parent in children:
            children[parent].append(code)
    return children


def post_order(parents: Mapping[str, str | None]) -> list[str]:
    """Every unit after all its descendants (leaves first), without recursion."""
    children = children_of(parents)
    order: list[str] = []
    roots = [c for c, p in parents.items() if p is None or p not in parents]
    stack: list[tuple[str, bool]] = [(r, False) for r in sorted(roots)]
    while stack:
        code, expanded = stack.pop()
        if expanded:
            order.append(code)
            continue
        stack.append((code, True))
        stack.extend((child, False) for child in sorted(children[code]))
    return order


def subtree_sums(parents: Mapping[str, str | None], own: Mapping[str, int]) -> dict[str, int]:
    """Each unit's own figure plus the sum of its children's subtree figures."""
    children = children_of(parents)
    total: dict[str, int] = {}
    for code in post_order(parents):
        total[code] = own.get(code, 0) + sum(total[c] for c in children[code])
    return total


def effective_targets(
    parents: Mapping[str, str | None],
    explicit: Mapping[str, int | None],
    added: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """A unit's target: its explicit one, or else the sum of its children's (contract §2)
    plus what is `added` at the unit itself (targets a cut-over carried there). An explicit
    target stands for its whole subtree, whatever was carried into it."""
    children = children_of(parents)
    more = added or {}
    target: dict[str, int] = {}
    for code in post_order(parents):
        given = explicit.get(code)
        target[code] = (
            given
            if given is not None
            else sum(target[c] for c in children[code]) + more.get(code, 0)
        )
    return target
