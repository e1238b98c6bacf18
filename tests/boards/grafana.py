"""The provisioned boards as the board check reads them: their queries, and Grafana's
interpolation of the variables and macros they use."""

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.support.stack import REPO

BOARDS = REPO / "deploy" / "grafana" / "dashboards"
# The values a person would pick in each board's variables.
VARIABLES = {
    "campaign": "c1",
    "indicator": "cccd_collected",
    "level": "3",  # wards: below the per-unit metrics cut-off, served from PostgreSQL
    "unit": "002",  # a lagging district: its curves, children and alerts all exist
    "explain": "1",
}
# What Grafana would put in its own variables for a 30-day range.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "30d"}


@dataclass(frozen=True)
class Query:
    board: str
    where: str  # panel title or "variable NAME"
    kind: str  # "prometheus" or "postgres"
    text: str


def boards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(BOARDS.glob("*.json"))}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def kind_of(datasource: dict[str, Any]) -> str:
    return {"prometheus": "prometheus", "postgres": "postgres"}[datasource["uid"]]


def panel_queries() -> list[Query]:
    found = []
    for name, board in boards().items():
        for panel in panels(board):
            for target in panel.get("targets", []):
                ds = target.get("datasource") or panel["datasource"]
                kind = kind_of(ds)
                text = target["expr"] if kind == "prometheus" else target["rawSql"]
                found.append(Query(name, panel["title"], kind, text))
    return found


def panel_texts(board: str, title: str) -> list[str]:
    """The queries of the panel `title` of `board`, as provisioned, in order."""
    (panel,) = [p for p in panels(boards()[board]) if p["title"] == title]
    return [t["expr"] if "expr" in t else t["rawSql"] for t in panel["targets"]]


def panel_query(board: str, title: str) -> str:
    """The one query of the panel `title` of `board`, as provisioned."""
    (text,) = panel_texts(board, title)
    return text


def variable_queries() -> list[Query]:
    found = []
    for name, board in boards().items():
        for var in board.get("templating", {}).get("list", []):
            if var["type"] == "query":
                query = var["query"]
                text = query if isinstance(query, str) else query["query"]
                found.append(
                    Query(name, f"variable {var['name']}", kind_of(var["datasource"]), text)
                )
    return found


# -- Grafana's interpolation, for the variables and macros the boards use ----------------
_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(__\w+)\(\)|\$(\w+)")


def interpolate(
    text: str,
    *,
    sql: bool,
    start: datetime,
    end: datetime,
    values: Mapping[str, str] | None = None,
) -> str:
    """`text` as Grafana would run it, the variables picked as `VARIABLES` (or `values`, for
    those it names)."""
    picked = {**VARIABLES, **(values or {})}

    def replace(m: re.Match[str]) -> str:
        braced, fmt, macro, plain = m.groups()
        if macro is not None:
            assert sql, f"SQL macro ${macro}() in PromQL"
            at = {"__timeFrom": start, "__timeTo": end}[macro]
            return f"'{at.isoformat()}'"
        name = braced or plain
        value = picked.get(name) or BUILTINS[name]
        if fmt == "sqlstring":
            return "'" + value.replace("'", "''") + "'"
        assert fmt is None, f"unsupported format {fmt}"
        return value

    out = _VAR.sub(replace, text)
    assert "$" not in out, f"an unknown Grafana variable is left in {out!r}"
    return out
