"""`tiendo check`: compare what people act on with the one state; exit 1 on any
disagreement, 75 when a rebuild in progress leaves nothing to compare (docs/check.md)."""

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from services.check import defaults
from services.notifier.settings import NotifierSettings

if TYPE_CHECKING:
    from services.check.run import Round

# sysexits.h's EX_TEMPFAIL ("try again later"): a rebuild replaying the topic is neither
# agreement (0) nor a disagreement (1, also any error's), and a cron job or CI gate should
# be able to tell it apart and run the check again once it ends
EXIT_RECOUNTING = 75


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = sub.add_parser(
        "check",
        help="compare live progress with history, and alerts and the stored board figures "
        "with the board (read only)",
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("TIENDO_AGGREGATOR_DATABASE_URL"),
        help="PostgreSQL DSN (default: TIENDO_AGGREGATOR_DATABASE_URL, else the notifier's)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=15.0,
        help="seconds between the two rounds (a notifier pass happens in between)",
    )
    parser.add_argument(
        "--no-boards",
        dest="boards",
        action="store_false",
        help="leave out the stored board figures (board_figures: a deployment whose "
        "aggregator runs no snapshot pass)",
    )
    parser.add_argument(
        "--window-max-age",
        type=float,
        # the aggregator's own setting, when the check runs beside it
        default=float(
            os.environ.get(
                "TIENDO_AGGREGATOR_METRICS_WINDOW_REFRESH_SECONDS",
                str(defaults.WINDOW_MAX_AGE_SECONDS),
            )
        ),
        help="seconds the aggregator's snapshot reuses the values one run-rate window ago "
        "(default: TIENDO_AGGREGATOR_METRICS_WINDOW_REFRESH_SECONDS, else 300)",
    )
    parser.add_argument(
        "--board-wait",
        type=float,
        default=120.0,
        help="longest wait past --settle for a newer snapshot of board_figures, when the "
        "first round disagreed with the stored one; and for each --metrics-url, for a "
        "scrape of the table's snapshot",
    )
    parser.add_argument(
        "--metrics-url",
        dest="metrics_urls",
        action="append",
        default=[],
        metavar="URL",
        help="an aggregator replica's /metrics (repeat for each replica): its per-unit "
        "series are compared with board_figures of the same snapshot pass (none given: "
        "not compared)",
    )
    parser.add_argument(
        "--metrics-unit-level",
        type=int,
        default=int(
            os.environ.get("TIENDO_AGGREGATOR_METRICS_UNIT_LEVEL", str(defaults.METRICS_UNIT_LEVEL))
        ),
        help="the deepest level the aggregator exports per-unit series of (default: "
        "TIENDO_AGGREGATOR_METRICS_UNIT_LEVEL, else 2)",
    )
    parser.set_defaults(func=lambda a: sys.exit(asyncio.run(_check(a))))


async def _check(args: argparse.Namespace) -> int:
    from services.check.run import check

    settings = NotifierSettings()
    result = await check(
        args.dsn or settings.database_url,
        settings,
        args.settle,
        datetime.now(UTC),
        boards=args.boards,
        window_max_age=timedelta(seconds=args.window_max_age),
        board_wait=timedelta(seconds=args.board_wait),
        metrics_urls=args.metrics_urls,
        metrics_level=args.metrics_unit_level,
    )
    for line in report(result, args.boards):
        print(line)  # noqa: T201
    return exit_status(result)


def exit_status(result: "Round") -> int:
    """0: everything agrees; 1: a disagreement; `EXIT_RECOUNTING`: nothing compared."""
    if result.recounting is not None:
        return EXIT_RECOUNTING
    return 1 if result.disagreements else 0


def report(result: "Round", boards: bool) -> list[str]:
    """The check's output: every disagreement, every replica whose figures were not
    compared (not a disagreement), and the summary line; or, while a rebuild replays the
    topic, the one line saying so."""
    if (r := result.recounting) is not None:
        return [
            f"recount in progress: a rebuild is replaying the events topic since "
            f"{r.started_at.isoformat()}: {r.replayed} of {r.total} records "
            f"({int(100 * r.fraction)} %); nothing compared, run the check again when it ends"
        ]
    lines = [str(d) for d in result.disagreements]
    compared = ""
    if result.metrics is None:
        compared = ", metrics not compared (no --metrics-url)"
    else:
        met = [m for m in result.metrics if m.snapshot is not None]
        lines += [
            f"metrics not compared: {m.url}: {m.note}" for m in result.metrics if m.snapshot is None
        ]
        series = sum(m.series for m in met)
        compared = f", {series} exported series of {len(met)}/{len(result.metrics)} replicas"
    stored = f", {result.board_rows} stored board figures" if boards else ""
    lines.append(
        f"checked {result.keys} judged keys{stored}{compared} and {result.alerts} open alerts: "
        f"{len(result.disagreements)} disagreements"
    )
    return lines
