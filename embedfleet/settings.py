"""Settings shared by every process, read from ``EMBEDFLEET_*`` environment variables and an
optional TOML config file named by ``EMBEDFLEET_CONFIG``.

Each process type has its own class (gateway, worker, client) that extends ``CommonSettings``:
one file can configure a whole deployment, and each process reads only the keys it knows.
Precedence: constructor arguments > environment > config file > defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, PrivateAttr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from embedfleet.model_store import ModelStore
from embedfleet.registry import DEFAULT_MODELS, ModelRegistry, ModelSpec
from embedfleet.tasks import DEFAULT_PART_LEASE_S

CONFIG_ENV = "EMBEDFLEET_CONFIG"


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMBEDFLEET_", extra="ignore", populate_by_name=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise FileNotFoundError(f"{CONFIG_ENV}={config_file} does not name a file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


class CommonSettings(_Base):
    """What every process must agree on: where state lives, which queue, which models."""

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("EMBEDFLEET_REDIS_URL", "REDIS_URL", "redis_url"),
    )
    # Every Redis key (job store and Celery's broker keys) starts with this, so several
    # deployments or test sessions can share one Redis without touching each other's keys.
    key_prefix: str = "embedfleet:"
    backend: Literal["celery", "ray"] = "celery"
    milvus_uri: str = "http://127.0.0.1:19530"
    milvus_token: str = ""
    models: tuple[ModelSpec, ...] = DEFAULT_MODELS
    default_model: str = ""
    # Job records, progress and embed results are kept this long after a job is created.
    job_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    bulk_queue: str = "embedfleet.bulk"
    interactive_queue: str = "embedfleet.interactive"
    # Celery/Redis: a task unacknowledged for this long is redelivered; keep it well above the
    # longest chunk (a chunk running longer than this would be started twice).
    visibility_timeout_seconds: int = Field(default=3600, gt=0)
    # A running part is leased to its worker, which refreshes the lease every third of this; a
    # gateway queues again a part whose lease lapsed (its worker was killed), so recovery takes about
    # this long whatever the visibility timeout.
    part_lease_seconds: float = Field(default=DEFAULT_PART_LEASE_S, gt=0)
    # Ray: "" starts a local cluster bound to 127.0.0.1; "auto" or "ray://host:port" joins one.
    ray_address: str = ""
    ray_namespace: str = "embedfleet"
    ray_pool_size: int = Field(default=1, gt=0)
    ray_num_cpus_per_actor: float = Field(default=1.0, ge=0)
    ray_num_gpus_per_actor: float = Field(default=0.0, ge=0)
    # Chunks that may wait in the Ray pool beyond those running (backpressure bound).
    ray_max_queued_chunks: int = Field(default=2, ge=0)
    # Where distilled models are stored and promoted (a shared volume in a cluster). Promoted
    # versions join the configured models in the registry.
    model_store_dir: Path = Path(".embedfleet/models")
    # Prometheus /metrics of this process (a Celery worker: of all its processes) on metrics_host:metrics_port;
    # port 0 turns it off (the default, so local processes never compete for a port; the chart sets 9090/9091).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # "json": one JSON object per log line (with job_id and part on a part's lines), for log collectors.
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    # The dataset store: corpora by reference, and the job data the system writes. A directory, or a
    # URI that pyarrow.fs or fsspec opens (s3://bucket/prefix, gs://...); every process must reach it.
    data_uri: str = ".embedfleet/data"

    def model_store(self) -> ModelStore:
        return ModelStore(self.model_store_dir)

    _registry_cache: tuple[str, ModelRegistry] | None = PrivateAttr(default=None)

    def registry(self) -> ModelRegistry:
        """Configured models plus the serving versions in the model store: a model promoted by a
        distillation job is served without restarting anything. The manifests are re-read only when
        the store's generation token changed, so this is cheap enough for every request."""
        store = self.model_store()
        generation = store.generation()
        cached = self._registry_cache
        if cached is not None and cached[0] == generation:
            return cached[1]
        promoted = store.promoted_specs() if self.model_store_dir.is_dir() else []
        configured = {m.name for m in self.models}
        registry = ModelRegistry([*self.models, *(m for m in promoted if m.name not in configured)], self.default_model)
        self._registry_cache = (generation, registry)
        return registry
