"""The settings every service shares. A service subclasses `ServiceSettings`.

Settings are read once, at start-up, from the environment (prefix
`AISUPER_`) and an optional `.env` file; nothing reads them at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AISUPER_",
        env_file=None,
        extra="ignore",
        frozen=True,
        validate_by_name=True,
    )

    #: The service's one lowercase noun (also OTEL_SERVICE_NAME and consumer group).
    service_name: str = "aisuper"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=0, ge=0, le=65535)
    #: Prometheus metrics over HTTP; 0 disables the endpoint.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    kafka_bootstrap: str = "127.0.0.1:9092"
    #: Tansu (the fallback broker) cannot do idempotent produce.
    kafka_idempotence: bool = True
    #: How long a consumer's fetch may wait for data; the fallback broker
    #: answers only after this, so it bounds event latency there.
    kafka_fetch_max_wait_ms: int = Field(default=100, ge=1, le=10_000)
    #: A consumer group member is dropped after this long without heartbeats.
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000, le=300_000)
    #: Topic definitions applied at start-up (empty: use infra/kafka/topics.yaml).
    topics_file: Path | None = None
    apply_topics: bool = True
    log_level: str = "INFO"
    log_json: bool = True
    #: Seconds SIGTERM waits for in-flight calls before cancelling them.
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    #: Upper bound for a call without a client deadline.
    default_deadline_s: float = Field(default=30.0, gt=0)
    #: Where the identity service answers (used by every other service's
    #: authentication and by the CLI).
    identity_target: str = "127.0.0.1:50051"
    #: Audience and issuer every service expects in a JWT.
    jwt_issuer: str = "https://identity.aisuper.local"
    jwt_audience: str = "aisuper"
    #: Authentication results are cached this long (revocation events drop
    #: entries sooner).
    auth_cache_ttl_s: float = Field(default=60.0, ge=0)
    outbox_batch_size: int = Field(default=500, ge=1, le=10_000)
    outbox_poll_interval_s: float = Field(default=0.5, gt=0)
    consumer_max_attempts: int = Field(default=5, ge=1, le=100)
    consumer_retry_base_s: float = Field(default=0.05, ge=0)
