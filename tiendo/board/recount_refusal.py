"""No figure while the counters are rebuilt: the check every reader of figures makes, and
the 503 a route answers with (`tiendo.board.recounting`). The aggregator's read API, the
notifier's briefing pack and a chief's page all refuse by this one rule.

A check made before a read is not enough: the rebuild's reset may commit while the read
runs. Made again after it, a read that saw the reset sees its row too, as the reset writes
the row in the same transaction and the replay lasts minutes."""

from tiendo.board import repository as board
from tiendo.board.recounting import Recounting
from tiendo.database import Connection
from tiendo.web import ProblemError

# A rebuild of 10 million events takes minutes (docs/capacity.md); half a minute between
# tries keeps a board's retries from adding to its load.
RETRY_AFTER_SECONDS = 30


class BeingRecounted(Exception):
    """Figures asked for while a rebuild is in progress."""

    def __init__(self, recounting: Recounting) -> None:
        super().__init__(recounting.describe())
        self.recounting = recounting


async def refuse_while_recounting(conn: Connection) -> None:
    """Raise `BeingRecounted` while a rebuild is in progress: its counters hold part of
    the events, and a figure read from them would be a wrong number (SPEC §5)."""
    recounting = await board.recount_in_progress(conn)
    if recounting is not None:
        raise BeingRecounted(recounting)


def recount_problem(exc: BeingRecounted) -> ProblemError:
    """The 503 `recount-in-progress` a route answers with: how far the rebuild is, and
    when to ask again."""
    return ProblemError(
        503,
        exc.recounting.describe(),
        [],
        slug="recount-in-progress",
        headers=retry_after(),
    )


def retry_after() -> dict[str, str]:
    """The `Retry-After` header of every answer refused for a rebuild."""
    return {"Retry-After": str(RETRY_AFTER_SECONDS)}
