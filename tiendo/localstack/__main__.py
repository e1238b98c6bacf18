"""`python -m tiendo.localstack kafka|postgres …`: run one server in the foreground."""

import argparse
from pathlib import Path

from tiendo.localstack.kafka import KafkaBroker
from tiendo.localstack.postgres import PostgresServer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tiendo.localstack")
    sub = parser.add_subparsers(dest="server", required=True)
    kafka = sub.add_parser("kafka", help="single-node Kafka (KRaft)")
    kafka.add_argument("--data-dir", type=Path, default=Path(".local/kafka"))
    kafka.add_argument("--port", type=int, default=9092)
    kafka.add_argument("--controller-port", type=int, default=9093)
    pg = sub.add_parser("postgres", help="PostgreSQL")
    pg.add_argument("--data-dir", type=Path, default=Path(".local/pg"))
    pg.add_argument("--port", type=int, default=5433)
    args = parser.parse_args()
    if args.server == "kafka":
        KafkaBroker(args.data_dir.resolve(), args.port, args.controller_port).exec()
    else:
        PostgresServer(args.data_dir.resolve(), args.port).exec()


if __name__ == "__main__":
    main()
