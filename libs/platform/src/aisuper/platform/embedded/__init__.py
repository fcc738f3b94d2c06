"""Embedded Kafka-protocol brokers for tests, CI and local development.

    broker = await start_embedded_broker(tmp_path, prefer="auto")
    ...  # use broker.bootstrap
    await broker.stop()

``prefer="auto"`` runs Apache Kafka 4.x (KRaft, jars from ``infra/kafka/fetch.sh``) when Java 17+
and the classpath are present, else Tansu (memory-only, see `TANSU_LIMITS`). From a shell:
``python -m aisuper.platform.embedded --data-dir D [--port P] [--kind auto|apache-kafka|tansu]``.
"""

from aisuper.platform.embedded.broker import (
    BrokerKind,
    BrokerPreference,
    BrokerStartError,
    EmbeddedBroker,
    read_pid_file,
    select_broker_kind,
    start_embedded_broker,
    start_embedded_broker_sync,
    stop_pid,
)
from aisuper.platform.embedded.kafka import (
    APACHE_KAFKA_LIMITS,
    ApacheKafka,
    find_java,
    find_kafka_classpath,
    find_repo_root,
)
from aisuper.platform.embedded.tansu import TANSU_LIMITS, Tansu, find_tansu

__all__ = [
    "APACHE_KAFKA_LIMITS",
    "TANSU_LIMITS",
    "ApacheKafka",
    "BrokerKind",
    "BrokerPreference",
    "BrokerStartError",
    "EmbeddedBroker",
    "Tansu",
    "find_java",
    "find_kafka_classpath",
    "find_repo_root",
    "find_tansu",
    "read_pid_file",
    "select_broker_kind",
    "start_embedded_broker",
    "start_embedded_broker_sync",
    "stop_pid",
]
