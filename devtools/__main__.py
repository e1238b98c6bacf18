"""`python -m devtools …`: the development tools that ship outside the product wheel.

    python -m devtools demo run            seed Hà Nội and the demo campaign, send traffic
    python -m devtools demo webhook-sink   a local webhook receiver that checks signatures
    python -m devtools demo showcase       the README's leaderboard and comparison with 2023

The local stack (`python -m devtools.localstack`), `make dev` (`python -m devtools.devstack`)
and the simulated-time replay (`python -m devtools.replay`) have their own entry points."""

import argparse
from collections.abc import Sequence

from devtools.demo import cli as demo_cli


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools", description=__doc__)
    sub = parser.add_subparsers(dest="area", required=True)
    demo_cli.add_commands(sub)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
