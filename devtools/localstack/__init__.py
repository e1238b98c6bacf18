"""The local, Docker-free stack: a real Kafka broker (KRaft, from Maven's jars) and a real
PostgreSQL server, each in its own data folder and on its own ports. Used by `make dev`
(`python -m devtools.localstack …`) and by the test suite, which starts its own on free ports."""

from devtools.localstack.kafka import KafkaBroker, alive_brokers, ensure_kafka_jars
from devtools.localstack.net import free_port, wait_for_port
from devtools.localstack.postgres import PostgresServer, postgres_bindir

__all__ = [
    "KafkaBroker",
    "PostgresServer",
    "alive_brokers",
    "ensure_kafka_jars",
    "free_port",
    "postgres_bindir",
    "wait_for_port",
]
