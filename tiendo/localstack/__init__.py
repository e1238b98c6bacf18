"""The local, Docker-free stack: a real Kafka broker (KRaft, from Maven's jars) and a real
PostgreSQL server, each in its own data folder and on its own ports. Used by `make dev`
(`python -m tiendo.localstack …`) and by the test suite, which starts its own on free ports."""

from tiendo.localstack.kafka import KafkaBroker, alive_brokers, ensure_kafka_jars
from tiendo.localstack.net import free_port, wait_for_port
from tiendo.localstack.postgres import PostgresServer, postgres_bindir

__all__ = [
    "KafkaBroker",
    "PostgresServer",
    "alive_brokers",
    "ensure_kafka_jars",
    "free_port",
    "postgres_bindir",
    "wait_for_port",
]
