"""The administrator's own secret for CLI commands that call an admin API: read from a file
(never a command-line argument, which `ps` and shell history would keep), so the audit log
names that identity."""

import argparse
import os
from pathlib import Path

ENV = "TIENDO_TOKEN_FILE"


def add_token_file(parser: argparse.ArgumentParser) -> None:
    """`--token-file`, defaulting to $TIENDO_TOKEN_FILE (required when that is unset)."""
    parser.add_argument(
        "--token-file",
        type=Path,
        default=os.environ.get(ENV),
        required=ENV not in os.environ,
        help=f"file holding an admin identity's secret (default ${ENV})",
    )


def token_of(args: argparse.Namespace) -> str:
    return Path(args.token_file).read_text(encoding="utf-8").strip()
