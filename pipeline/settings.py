"""One settings object for every process, read from ``GENGUARD_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_KAFKA = "127.0.0.1:9092"
DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENGUARD_", extra="ignore")

    kafka_url: str | None = Field(
        default=None,
        description="host:port[,host:port] of an Apache Kafka cluster; unset means the embedded Tansu broker.",
    )
    embedded_kafka_addr: str = EMBEDDED_KAFKA
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "genguard"
    var_dir: Path = Path("var")

    policy_path: Path = DEFAULT_POLICY
    tenant_policy_dir: Path | None = Field(
        default=None, description="Directory of per-tenant overlays named <tenant>.yaml; default: policies/tenants."
    )
    text_model_dir: Path | None = Field(
        default=None, description="Exported MiniLM (model.onnx, tokenizer.json, VERSION); default var/models/minilm."
    )

    api_host: str = "127.0.0.1"
    api_port: int = 8080
    max_prompt_chars: int = 4000
    max_body_bytes: int = 64 * 1024

    environment: str = "production"
    worker_name: str = "genguard"
    audit_segment_records: int = 100_000
    shadow_policy_path: Path | None = Field(
        default=None, description="A candidate policy evaluated next to the live one; both decisions are recorded."
    )
    job_lease_s: int = 60
    done_ttl_s: int = 7 * 24 * 3600

    @property
    def embedded_broker(self) -> bool:
        return not self.kafka_url

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_url or self.embedded_kafka_addr

    @property
    def models_dir(self) -> Path:
        return self.var_dir / "models"

    @property
    def audit_dir(self) -> Path:
        return self.var_dir / "audit"

    @property
    def signals_dir(self) -> Path:
        return self.var_dir / "signals"

    @property
    def text_model(self) -> Path:
        return self.text_model_dir or self.models_dir / "minilm"

    @property
    def tenants_dir(self) -> Path:
        return self.tenant_policy_dir or self.policy_path.parent / "tenants"


@lru_cache
def get_settings() -> Settings:
    return Settings()
