"""What the simulator server can be told: one pydantic model, mirrored one to one by the CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from picaco.sim.request_body import MIB

# in the order a fault is drawn: one uniform draw per API request, compared with the cumulative rates
FAULTS: tuple[str, ...] = ("429", "500", "hang", "truncated", "malformed", "filtered")


class SimServerConfig(BaseModel):
    """Everything the simulator server can be told. The CLI flags mirror these fields one to one."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port
    world: str = "echo"
    seed: int = 0  # seeds the latency jitter and the fault draws
    latency_ms: float = 0.0
    jitter_ms: float = 0.0  # uniform extra latency in [0, jitter_ms]
    rate_429: float = 0.0
    retry_after_s: float = 1.0
    rate_500: float = 0.0
    rate_hang: float = 0.0
    hang_s: float = 30.0
    hang_then: Literal["answer", "drop"] = "drop"
    rate_truncated: float = 0.0
    rate_malformed: float = 0.0
    rate_filtered: float = 0.0  # 200 with every choice content-filtered (Gemini: the prompt blocked)
    max_context_tokens: int | None = None
    models: list[str] | None = None  # when set, other model names get a 404
    api_key: SecretStr | None = None  # when set, requests must carry this key (401 otherwise)
    # fault: every error body (4xx, 5xx) echoes the request's credentials, as a careless gateway does
    echo_auth_in_errors: bool = False
    max_choices: int | None = Field(None, ge=1)  # answer at most this many choices, as llama.cpp (1) does
    log_path: Path | None = None  # append every request as one JSON line
    log_max_entries: int = 100_000  # in-memory log bound; the JSONL file keeps everything
    embed_dim: int = 256
    http: Literal["auto", "h11", "httptools"] = "auto"
    max_body_mb: float = 8.0  # larger request bodies get 413 before they are read (MiB)

    @field_validator("rate_429", "rate_500", "rate_hang", "rate_truncated", "rate_malformed", "rate_filtered")
    @classmethod
    def _rate(cls, v: float, info) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{info.field_name} must be within [0, 1], got {v}")
        return float(v)

    @field_validator("latency_ms", "jitter_ms", "retry_after_s", "hang_s")
    @classmethod
    def _non_negative(cls, v: float, info) -> float:
        if v < 0:
            raise ValueError(f"{info.field_name} must be >= 0, got {v}")
        return float(v)

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        if not 0 <= v <= 65535:
            raise ValueError(f"port must be within [0, 65535], got {v}")
        return v

    @field_validator("max_context_tokens", "log_max_entries", "embed_dim")
    @classmethod
    def _positive(cls, v: int | None, info) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"{info.field_name} must be >= 1, got {v}")
        return v

    @field_validator("max_body_mb")
    @classmethod
    def _body_limit(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"max_body_mb must be > 0, got {v}")
        return float(v)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MIB)

    @model_validator(mode="after")
    def _rates_sum(self) -> "SimServerConfig":
        total = sum(self.fault_rates().values())
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates sum to {total:g}, more than 1")
        return self

    def fault_rates(self) -> dict[str, float]:
        return {"429": self.rate_429, "500": self.rate_500, "hang": self.rate_hang,
                "truncated": self.rate_truncated, "malformed": self.rate_malformed,
                "filtered": self.rate_filtered}
