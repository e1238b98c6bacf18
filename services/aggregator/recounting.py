"""The read API while a rebuild replays the topic: no figure, a 503 that says how far it
is (`tiendo.board.recount_refusal`). Reads of one unit, a leaderboard or a comparison all
ask."""

from tiendo.board.recount_refusal import BeingRecounted, recount_problem
from tiendo.board.recount_refusal import refuse_while_recounting as _check
from tiendo.database import Connection


async def refuse_while_recounting(conn: Connection) -> None:
    """Raise the 503 `recount-in-progress` while a rebuild is in progress."""
    try:
        await _check(conn)
    except BeingRecounted as exc:
        raise recount_problem(exc) from exc


class RecountBegan(BeingRecounted):
    """A rebuild's reset committed while figures were being made: they are dropped."""
