"""The read API while a rebuild replays the topic: no figure, a 503 that says how far it
is (`tiendo.board.recounting`). Reads of one unit, a leaderboard or a comparison all ask."""

from tiendo.board import repository as board
from tiendo.board.recounting import Recounting
from tiendo.database import Connection
from tiendo.web import ProblemError

# A rebuild of 10 million events takes minutes (docs/capacity.md); half a minute between
# tries keeps a board's retries from adding to its load.
RETRY_AFTER_SECONDS = 30


async def refuse_while_recounting(conn: Connection) -> None:
    """Raise a 503 while a rebuild is in progress: its counters hold part of the events,
    and a figure read from them would be a wrong number (SPEC §5)."""
    recounting = await board.recount_in_progress(conn)
    if recounting is not None:
        raise ProblemError(
            503,
            recounting.describe(),
            [],
            slug="recount-in-progress",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


class RecountBegan(Exception):
    """A rebuild's reset committed while figures were being made: they are dropped."""

    def __init__(self, recounting: Recounting) -> None:
        super().__init__(recounting.describe())
        self.recounting = recounting
