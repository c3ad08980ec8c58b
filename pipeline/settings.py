"""One settings object for every process, read from ``GENGUARD_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_KAFKA = "127.0.0.1:9092"
DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"


class Settings(BaseSettings):
    # var/genguard.env is written by `make demo` (GENGUARD_ENVIRONMENT=demo); real env vars win
    model_config = SettingsConfigDict(env_prefix="GENGUARD_", extra="ignore", env_file="var/genguard.env")

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

    clip_model_dir: Path | None = Field(
        default=None, description="Exported CLIP towers (genguard models export --clip-dir); default var/models/clip.")
    whisper_model_dir: Path | None = Field(
        default=None, description="CTranslate2 Whisper model; default var/models/whisper-base (assembled on export).")
    text_precision: Literal["int8", "fp32"] = Field(
        default="int8", description="MiniLM (exemplars and the learned model's English head): int8 weights "
        "(on 2 cores a prompt check 1.5x faster) or float. The shipped text model's MiniLM head was trained "
        "on the int8 vectors.")
    clip_precision: Literal["int8", "fp32"] = Field(
        default="int8", description="CLIP image tower on CPUs: int8 weights (about 2x) or float; CUDA: float.")
    whisper_backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    max_upload_bytes: int = 500 * 1024 * 1024
    max_video_seconds: float = 300.0
    max_video_side: int = 3840
    sample_fps: float = 1.0
    max_frames: int = 48
    max_image_bytes: int = Field(default=25 * 1024 * 1024, description="Largest reference image accepted.")
    max_image_pixels: int = Field(default=40_000_000, ge=1, description="Largest reference image in pixels, "
                                  "checked from its header before decoding (a 10,000 x 10,000 image is refused).")
    frame_side: int = Field(default=640, ge=64, le=3840,
                            description="Long side sampled frames are scaled to (once) for every frame model.")

    sign_cert_path: Path | None = Field(default=None, description="PEM chain (signer first); unset: dev PKI")
    sign_key_path: Path | None = Field(default=None, description="PEM private key for the signer")
    trust_anchors_path: Path | None = Field(default=None, description="PEM roots that verify trusts")
    watermark_key_path: Path | None = Field(
        default=None, description="Keyring of the invisible watermark (JSON, mode 0600); unset: a dev keyring "
        "generated under var/keys")
    tsa_url: str | None = Field(default=None, description="RFC 3161 timestamp authority for signatures")

    api_host: str = "127.0.0.1"
    api_port: int = 8080
    max_prompt_chars: int = 4000
    prompt_batch_max: int = Field(default=32, ge=1, le=256, description="Most prompts checked in one model call.")
    prompt_batch_wait_ms: float = Field(
        default=0.0, ge=0, le=50, description="How long a batch waits for company once nothing is in flight; "
        "0: none (requests that arrive while one batch runs form the next).")
    max_body_bytes: int = 64 * 1024
    console_session_s: int = Field(default=8 * 3600, ge=60, description="How long a console sign-in lasts.")
    api_max_in_flight: int = Field(default=64, ge=1, description="Requests one API process serves at once; "
                                   "past that it answers 503 overloaded (load shedding).")

    environment: str = "production"
    worker_name: str = "genguard"
    topic_partitions: int = Field(default=4, ge=1, description="Partitions per topic: the most replicas of a stage.")
    topic_replication: int = Field(default=1, ge=1, description="Replication factor of topics genguard creates.")
    worker_concurrency: int = Field(
        default=1, ge=1, le=64, description="Jobs one worker runs at once per stage: its bound on in-flight work.")
    fetch_max_wait_ms: int = Field(
        default=10, ge=1, le=1500, description="How long a worker's fetch may wait for records: the latency "
        "a message can wait at each hop on a broker that holds fetches (Tansu); Kafka answers at once.")
    heartbeat_every_s: float = 5.0
    audit_segment_records: int = 100_000
    shadow_policy_path: Path | None = Field(
        default=None, description="A candidate policy evaluated next to the live one; both decisions are recorded."
    )
    job_lease_s: int = 60
    stage_timeout_s: float = 120.0
    reconcile_every_s: float = 5.0
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
    def keys_dir(self) -> Path:
        return self.var_dir / "keys"

    @property
    def hashes_dir(self) -> Path:
        return self.var_dir / "hashes"

    @property
    def releases_dir(self) -> Path:
        return self.var_dir / "releases"

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"

    @property
    def media_dir(self) -> Path:
        return self.var_dir / "media"

    @property
    def clip_model(self) -> Path:
        return self.clip_model_dir or self.models_dir / "clip"

    @property
    def whisper_model(self) -> Path:
        return self.whisper_model_dir or self.models_dir / "whisper-base"

    @property
    def text_model(self) -> Path:
        return self.text_model_dir or self.models_dir / "minilm"

    @property
    def tenants_dir(self) -> Path:
        return self.tenant_policy_dir or self.policy_path.parent / "tenants"


@lru_cache
def get_settings() -> Settings:
    return Settings()
