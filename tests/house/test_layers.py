"""The house's floors: the shared library imports no service, a service imports no other
service, and only the operator's entry points (the `tiendo` command, the schema builder and
`tiendo check`) reach across. docs/architecture.md draws the same picture."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# room -> the rooms it may import (besides itself)
ALLOWED = {
    "tiendo": {"tiendo.events"},
    "tiendo.events": set(),
    "tiendo.board": {"tiendo", "tiendo.events"},
    "services.ingest": {"tiendo", "tiendo.events"},
    "services.aggregator": {"tiendo", "tiendo.board", "tiendo.events"},
    "services.notifier": {"tiendo", "tiendo.board", "tiendo.events"},
    # `tiendo check` compares the notifier's alerts with the board
    "services.check": {"tiendo", "tiendo.board", "tiendo.events", "services.notifier"},
    # the entry point and the schema builder know every service
    "services": {
        "tiendo",
        "tiendo.board",
        "tiendo.events",
        "services.ingest",
        "services.aggregator",
        "services.notifier",
        "services.check",
    },
}
OURS = ("tiendo", "services", "devtools", "bench", "scripts", "tests")


def room(module: str) -> str:
    parts = module.split(".")
    if (
        parts[0] == "services"
        and len(parts) > 1
        and parts[1]
        in (
            "ingest",
            "aggregator",
            "notifier",
            "check",
        )
    ):
        return f"services.{parts[1]}"
    if parts[0] == "tiendo" and len(parts) > 1 and parts[1] in ("board", "events"):
        return f"tiendo.{parts[1]}"
    return parts[0]


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n.split(".")[0] in OURS}


def test_every_import_follows_the_floors() -> None:
    wrong: dict[str, list[str]] = {}
    for package in ("tiendo", "services"):
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            source = room(module)
            bad = sorted(
                name
                for name in imported(path)
                if room(name) != source and room(name) not in ALLOWED[source]
            )
            if bad:
                wrong[module] = bad
    assert wrong == {}
