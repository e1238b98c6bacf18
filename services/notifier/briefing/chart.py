"""The pack's chart: progress against plan over the campaign's days, the top unit large and
each of its children small, as a PNG (matplotlib's Agg canvas, no pyplot global state, so
two requests can draw at once)."""

import io
import math
from collections.abc import Sequence
from typing import Any

from services.notifier.briefing.model import Series
from services.notifier.briefing.words import number

DONE_COLOUR = "#1b7f3b"
BEHIND_COLOUR = "#c62828"
PLAN_COLOUR = "#6b6b6b"
COLUMNS = 6


def _pct(values: Sequence[float], target: int) -> list[float]:
    return [100.0 * v / target if target else 0.0 for v in values]


def _colour(s: Series) -> str:
    """Red for a unit the ranking beside the chart marks red (its judged status)."""
    return BEHIND_COLOUR if s.late else DONE_COLOUR


def progress_chart(
    series: Sequence[Series], words: dict[str, str], language: str, *, dpi: int = 110
) -> bytes:
    """The top unit's value against plan, then a small panel (pct against plan) per child."""
    if not series:
        return b""
    # imported on first use: a first import may build matplotlib's font cache (and log
    # that it does), which a starting service must not do
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    top, children = series[0], series[1:]
    rows = math.ceil(len(children) / COLUMNS) if children else 0
    # sized to leave the headline room on the first A4 page
    figure = Figure(figsize=(7.2, 2.1 + 0.9 * rows), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(1 + rows, COLUMNS, height_ratios=[2.3, *([1.0] * rows)])
    ax = figure.add_subplot(grid[0, :])
    # matplotlib's stubs want numbers; its date converter takes the dates themselves
    days: Any = list(top.moments)
    ax.plot(days, top.planned, color=PLAN_COLOUR, linestyle="--", label=words["plan"])
    ax.plot(
        days,
        top.values,
        color=_colour(top),
        linewidth=2,
        label=words["actual"],
    )
    ax.axhline(top.target, color="#999999", linewidth=0.6)
    ax.set_title(f"{top.unit_name}: {words['progress_vs_plan']}", fontsize=10, loc="left")
    ax.legend(fontsize=8, loc="upper left")
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_formatter(DateFormatter("%d/%m"))  # type: ignore[no-untyped-call]
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: number(language, v)))
    for i, s in enumerate(children):
        small = figure.add_subplot(grid[1 + i // COLUMNS, i % COLUMNS])
        actual, planned = _pct(s.values, s.target), _pct(s.planned, s.target)
        small.plot(range(len(planned)), planned, color=PLAN_COLOUR, linestyle="--", linewidth=0.8)
        small.plot(range(len(actual)), actual, color=_colour(s))
        small.set_ylim(0, max(100.0, *actual) if actual else 100.0)
        small.set_xticks([])
        small.set_yticks([0, 50, 100])
        small.tick_params(labelsize=5)
        name = s.unit_name if len(s.unit_name) <= 18 else s.unit_name[:17] + "…"
        small.set_title(name, fontsize=6)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
