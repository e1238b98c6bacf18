"""The local, Docker-free stack: a real Kafka broker (KRaft, from Maven jars) and a real
PostgreSQL server, each in its own data folder and ports. Used by `make dev` and by the
test suite, which starts its own instances on free ports."""

from tiendo.localstack.kafka import KafkaBroker, ensure_kafka_jars
from tiendo.localstack.net import free_port, wait_for_port
from tiendo.localstack.postgres import PostgresServer

__all__ = ["KafkaBroker", "PostgresServer", "ensure_kafka_jars", "free_port", "wait_for_port"]
