"""The notifier while the aggregator's counters are rebuilt (`tiendo.board.recounting`).

A rebuild resets the counters and the history, then replays the events topic batch by
batch: until it has caught up, every figure the board computes is short of the events, and
a judgment made from them is a wrong number (SPEC §5). So the evaluator judges nothing
(docs/alerts.md "While the counters are rebuilt"), the briefing pack answers 503 as the
aggregator's read API does (`tiendo.board.recount_refusal`), and the chief's page shows a
notice where its figures were.

Each asks before a read and again after it: a rebuild's reset may commit while the read
runs (`tiendo.board.recount_refusal` says why the second asking sees it)."""

from tiendo.board.recount_refusal import BeingRecounted
from tiendo.board.recounting import Recounting

# what `tiendo notifier briefing` (services/notifier/cli.py) says without a traceback
__all__ = ["BeingRecounted", "notice"]


def notice(recounting: Recounting) -> tuple[str, str]:
    """What a chief's page says instead of its figures: Vietnamese, English."""
    done = int(100 * recounting.fraction)
    return (
        f"Số liệu đang được tính lại từ đầu (đã xong {done} %). Trong lúc này không hiển "
        "thị số liệu và cảnh báo giữ nguyên; số liệu sẽ hiển thị lại khi tính xong.",
        f"The figures are being recounted from the start ({done} % done). Meanwhile no "
        "figures are shown and alerts stay as they are; the figures return when it ends.",
    )
