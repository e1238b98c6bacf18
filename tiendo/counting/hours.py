"""A local day's hours as an SQL array, the layout of the day rollups' `hours`
(`tiendo.counting.rollups`) and of `history_reach`'s (`tiendo.counting.reach`): `hours[h +
1]` is hour h's (`rules.local_hour`)."""

# A local day has at most 25 hours (the day clocks go back).
DAY_HOURS = 25


def hours_of(change: str, hour: str) -> str:
    """A group's changes by hour as an `hours` array (an aggregate over rows of one change
    each, `change` in hour `hour`)."""
    cells = (f"coalesce(sum({change}) FILTER (WHERE {hour} = {h}), 0)" for h in range(DAY_HOURS))
    return f"ARRAY[{', '.join(cells)}]::bigint[]"


def one_hour(hour: str) -> str:
    """An `hours` array of 1 in hour `hour` (an SQL expression) and 0 in every other."""
    cells = (f"({hour} = {h})::int" for h in range(DAY_HOURS))
    return f"ARRAY[{', '.join(cells)}]::bigint[]"


def hours_added(left: str, right: str) -> str:
    """Two `hours` arrays added, cell by cell (neither null: a null array gives an array
    of nulls, not null)."""
    cells = (f"{left}[{i}] + {right}[{i}]" for i in range(1, DAY_HOURS + 1))
    return f"ARRAY[{', '.join(cells)}]::bigint[]"
