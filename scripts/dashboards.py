"""Grafana boards as code: `make dashboards` writes deploy/grafana/dashboards/*.json.

Four boards, titles and labels in Vietnamese (the operators' language), descriptions in
English for the engineers who keep them:

- tiendo-overview     Tổng quan đợt cao điểm (campaign overview, Prometheus)
- tiendo-leaderboard  Bảng xếp hạng — giao ban tuần (weekly briefing, PostgreSQL)
- tiendo-unit         Chi tiết đơn vị (unit drill-down, PostgreSQL and Prometheus)
- tiendo-pipeline     Sức khoẻ hệ thống (pipeline health, Prometheus and PostgreSQL)

Every query of every panel and variable is executed against a real Prometheus and a real
PostgreSQL by tests/boards/test_dashboards.py. Per-unit Prometheus series stop at the
aggregator's `metrics_unit_level` (default 2), so whatever must work for any level (the
leaderboard, the unit's own figures and children) is read from PostgreSQL: from
`board_figures`, the figures tiendo/board judged and the aggregator stored, never computed
again here (docs/metrics.md, "Stored figures").
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from scripts.boards.kit import OUT, ROOT
from scripts.boards.leaderboard import leaderboard
from scripts.boards.overview import overview
from scripts.boards.pipeline import pipeline
from scripts.boards.unit_board import unit_board

BOARDS = {
    "tiendo-overview": overview,
    "tiendo-leaderboard": leaderboard,
    "tiendo-unit": unit_board,
    "tiendo-pipeline": pipeline,
}


def render(name: str) -> str:
    """The provisioned JSON of one board, byte-for-byte what `make dashboards` writes."""
    board: dict[str, Any] = json.loads(json.dumps(BOARDS[name]().build(), cls=JSONEncoder))
    # Stable panel ids (links and alerts refer to panels by id).
    for number, built in enumerate(board["panels"], start=1):
        built["id"] = number
    return json.dumps(board, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def generate(out: Path = OUT) -> list[Path]:
    """Write every board into `out`; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in BOARDS:
        path = out / f"{name}.json"
        path.write_text(render(name), encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the JSON files")
    args = parser.parse_args()
    for path in generate(args.out):
        sys.stdout.write(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}\n")


if __name__ == "__main__":
    main()
