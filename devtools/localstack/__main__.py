"""`python -m devtools.localstack kafka|postgres|jars …`.

`kafka` and `postgres` prepare their data dir (jars, storage format, initdb: each only the
first time) and then become the server with exec: a process runner's SIGINT/SIGTERM reaches
the server itself, and a second run reuses the data.
"""

import argparse
import sys
from pathlib import Path

from devtools.localstack.kafka import DEFAULT_CACHE, KafkaBroker, ensure_kafka_jars
from devtools.localstack.postgres import PostgresServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.localstack")
    sub = parser.add_subparsers(dest="server", required=True)

    kafka = sub.add_parser("kafka", help="run a single-node Kafka (KRaft) in the foreground")
    kafka.add_argument("--data-dir", type=Path, default=Path(".local/kafka"))
    kafka.add_argument("--port", type=int, default=9092)
    kafka.add_argument("--controller-port", type=int, default=9093)
    kafka.add_argument("--heap", default="1g", help="JVM -Xmx (default: %(default)s)")

    pg = sub.add_parser("postgres", help="run PostgreSQL in the foreground")
    pg.add_argument("--data-dir", type=Path, default=Path(".local/pg"))
    pg.add_argument("--port", type=int, default=5433)
    pg.add_argument(
        "--fast", action="store_true", help="fsync and synchronous_commit off (loses commits)"
    )

    jars = sub.add_parser("jars", help="fetch the Kafka jars (CI warm-up); print their folder")
    jars.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)

    args = parser.parse_args(argv)
    if args.server == "kafka":
        KafkaBroker(args.data_dir.resolve(), args.port, args.controller_port, heap=args.heap).exec()
    elif args.server == "postgres":
        PostgresServer(args.data_dir.resolve(), args.port, fast=args.fast).exec()
    else:
        sys.stdout.write(f"{ensure_kafka_jars(args.cache_dir.resolve())}\n")


if __name__ == "__main__":
    main()
