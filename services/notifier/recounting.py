"""The notifier while the aggregator's counters are rebuilt (`tiendo.board.recounting`).

A rebuild resets the counters and the history, then replays the events topic batch by
batch: until it has caught up, every figure the board computes is short of the events, and
a judgment made from them is a wrong number (SPEC §5). So the evaluator judges nothing
(docs/alerts.md "While the counters are rebuilt"), the briefing pack answers 503, and the
chief's page shows a notice where its figures were.

A check made before a read is not enough: the rebuild's reset may commit while the read
runs. Checked after it, a read that saw the reset sees its row too, as the reset writes
the row in the same transaction and the replay lasts minutes."""

from tiendo.board import repository as board
from tiendo.board.recounting import Recounting
from tiendo.database import Connection
from tiendo.web import ProblemError

# as the aggregator's read API answers (services/aggregator/recounting.py): a rebuild of
# ten million events takes minutes; half a minute between tries adds no load
RETRY_AFTER_SECONDS = 30


class BeingRecounted(Exception):
    """Figures asked for while a rebuild is in progress."""

    def __init__(self, recounting: Recounting) -> None:
        super().__init__(recounting.describe())
        self.recounting = recounting


async def refuse_while_recounting(conn: Connection) -> None:
    """Raise `BeingRecounted` while a rebuild is in progress."""
    recounting = await board.recount_in_progress(conn)
    if recounting is not None:
        raise BeingRecounted(recounting)


def recount_problem(exc: BeingRecounted) -> ProblemError:
    """The 503 a route answers with, as the aggregator's read API does."""
    return ProblemError(
        503,
        str(exc),
        [],
        slug="recount-in-progress",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def notice(recounting: Recounting) -> tuple[str, str]:
    """What a chief's page says instead of its figures: Vietnamese, English."""
    done = int(100 * recounting.fraction)
    return (
        f"Số liệu đang được tính lại từ đầu (đã xong {done} %). Trong lúc này không hiển "
        "thị số liệu và cảnh báo giữ nguyên; số liệu sẽ hiển thị lại khi tính xong.",
        f"The figures are being recounted from the start ({done} % done). Meanwhile no "
        "figures are shown and alerts stay as they are; the figures return when it ends.",
    )
