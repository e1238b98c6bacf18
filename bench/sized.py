"""The command line of the one-figure benchmarks: `--events N`, print and keep the result."""

import argparse
import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

from bench.report import RESULTS


def run(name: str, main: Callable[[int], Coroutine[Any, Any, dict[str, object]]]) -> None:
    """Run `main(--events)`, write bench/results/<name>.json and print it."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    result = asyncio.run(main(args.events))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
