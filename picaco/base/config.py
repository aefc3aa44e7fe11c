"""The configuration records: a run (RunConfig and its parts) and how calls travel (ClientConfig, with
each provider's settings and the retry policy). Every field is checked; unknown fields are errors.
Loading them from YAML is picaco.config's job; these are the records alone, so parsing a config does not
import the call layer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ProviderSettings(BaseModel):
    """How to reach one provider. None of this enters a cache key except the endpoint identity: `base_url`,
    or for a managed engine (kind llamacpp) the model file's hash and the engine options that change answers."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: str | None = None  # the provider implementation; defaults to the provider name ('vllm' -> kind 'openai')
    base_url: str | None = None
    api_key_env: str | None = None  # the environment variable holding the key; never the key itself
    # None: a key is required by the hosted APIs (api.openai.com, Gemini's own endpoint) and optional
    # elsewhere; true: a missing key variable is a config error before any call (a gateway that needs one)
    require_key: bool | None = None
    timeout_s: float = 60.0
    max_concurrency: int = 64
    # the most samples one call returns; None: the kind's default (Provider.default_max_samples_per_call).
    # A server that answers fewer than asked is detected and the client fetches the rest in more calls.
    max_samples_per_call: int | None = Field(None, ge=1)
    options: dict[str, str | int | float | bool] = {}


class RetryPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    max_attempts: int = Field(8, ge=1)
    max_total_s: float = Field(600.0, gt=0)  # wall time across all attempts of one call
    base_delay_s: float = Field(0.5, ge=0)
    max_delay_s: float = Field(30.0, ge=0)
    jitter: float = Field(0.5, ge=0, le=1)  # delay *= 1 + U(0, jitter); spreads a herd of 429s apart
    jitter_seed: int = 0


def default_cache_dir() -> Path:
    """PICACO_CACHE_DIR, else artifacts/cache under the working directory: one cache for every command."""
    return Path(os.environ.get("PICACO_CACHE_DIR") or "artifacts/cache")


class ClientConfig(BaseModel):
    """How calls travel. Nothing here can change an answer, so nothing here enters a cache key."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    cache_dir: Path = Field(default_factory=default_cache_dir)
    cache_mode: Literal["normal", "refresh", "off"] = "normal"
    # A shared Postgres cache (postgresql://user@host/db) instead of cache_dir; None: $PICACO_CACHE_URL if
    # set, else cache_dir; "": cache_dir whatever the environment says (a run that must not share, e.g.
    # the estimate's simulated run). Run configs are copied into run directories and checkpoints, so
    # the password comes from PICACO_CACHE_URL, PGPASSWORD or ~/.pgpass, never from here.
    cache_url: str | None = None
    # How long a worker's claim on samples it is fetching holds others off a shared cache (a dead
    # worker's claim lapses after it; longer than one call with its retries, as a rule).
    claim_ttl_s: float = Field(default=120.0, gt=0)
    providers: dict[str, ProviderSettings] = {}
    retry: RetryPolicy = RetryPolicy()
    prices_path: Path | None = None
    call_log_path: Path | None = None
    # Spending caps for the whole run, across resumes (picaco/llm/budget.py): USD of priced calls, and
    # tokens of unpriced chat calls (local engines). The run stops before a call that could pass one.
    budget_usd: float | None = Field(None, gt=0, allow_inf_nan=False)
    budget_tokens: int | None = Field(None, strict=True, ge=1)

    @field_validator("cache_url")
    @classmethod
    def _no_password(cls, url: str | None) -> str | None:
        if not url:
            return url
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("cache_url must be a postgresql:// URL")
        if parts.password is not None:
            raise ValueError("cache_url must not carry a password (it would be copied into run records): "
                             "set PICACO_CACHE_URL, PGPASSWORD or ~/.pgpass instead")
        return url


class ModelsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    target: str = "sim/target"
    judge: str = "sim/judge"
    # The paper's optimizer is "typically the target model" (App. C.1); None means: the target.
    optimizer: str | None = None
    embedding: str = "st/all-MiniLM-L6-v2"

    @property
    def optimizer_model(self) -> str:
        return self.optimizer or self.target


class PromptSource(BaseModel):
    """Where the task prompts X come from: the bundled demo prompts or a built dataset file."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    demo_family: Literal["hh", "schwartz"] | None = None
    path: Path | None = None  # a Parquet/JSONL/CSV file with a `prompt` column (and optionally `prompt_id`)
    offset: int = Field(0, strict=True, ge=0)  # skip this many prompts (the demo uses 0..N-1 for X and the rest held out)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.demo_family is None) == (self.path is None):
            raise ValueError("give exactly one of 'demo_family' or 'path'")
        return self


# Numeric fields are strict: YAML `iterations: true` or `m1: "3"` is an error, not T=1 or 3. An int is
# still accepted where a float is asked for.


class SamplingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    target_temperature: float = Field(1.0, strict=True, ge=0, le=2)
    target_max_tokens: int = Field(400, strict=True, ge=1)
    judge_temperature: float = Field(0.0, strict=True, ge=0, le=2)
    # A judge reply that cannot be parsed is asked again with some temperature (at 0 it would repeat).
    judge_retry_temperature: float = Field(0.7, strict=True, ge=0, le=2)
    judge_max_tokens: int = Field(600, strict=True, ge=1)
    # ask the judges for a JSON schema of their reply where the provider supports one (docs/call_layer.md)
    judge_schema: bool = Field(True, strict=True)
    optimizer_temperature: float = Field(1.0, strict=True, ge=0, le=2)
    optimizer_max_tokens: int = Field(600, strict=True, ge=1)


class PicacoConfig(BaseModel):
    """Algorithm 1's hyperparameters (paper defaults: N=50, M1=10, M2=15, T=10, n=10)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    n_prompts: int = Field(50, strict=True, ge=1, le=10_000, description="N")
    m1: int = Field(10, strict=True, ge=1, le=1000, description="aligned responses kept per prompt")
    m2: int = Field(15, strict=True, ge=1, le=1000, description="noisy responses kept per prompt; new and kept candidates per iteration")
    iterations: int = Field(10, strict=True, ge=1, le=1000, description="T")
    n_pe_samples: int = Field(10, strict=True, ge=1, le=128, description="n of Eq. (6)")
    buckets: int = Field(3, strict=True, ge=1, le=64, description="E-step buckets, each with its own 3 random demonstrations")
    samples_per_bucket: int = Field(3, strict=True, ge=1, le=64)
    demos_per_bucket: int = Field(3, strict=True, ge=0, le=16)
    noisy_samples: int = Field(20, strict=True, ge=1, le=512, description="raw responses drawn per prompt for the noisy pool")
    instruction_length: int = Field(150, strict=True, ge=10, le=2000, description="word limit of Fig. 8")
    beta: float | None = Field(None, strict=True, allow_inf_nan=False, description="overrides the composition's beta")
    judge_attempts: int = Field(3, strict=True, ge=1, le=10)
    optimizer_attempts: int = Field(3, strict=True, ge=1, le=10)
    # Ask the optimizer for a JSON reply {"instruction": ...} beside Fig. 8's <INS> tags (docs/method.md,
    # "Optimizer reply schema"): auto = only on self-hosted engines (llamacpp, vllm, ollama), where small
    # models that never write the tags run; the simulator and hosted APIs keep the paper's free text.
    optimizer_schema: Literal["auto", "on", "off"] = "auto"
    # How p_e(y|x) of Eq. (6) weights the pool in Eq. (4); see docs/method.md.
    pe_weighting: Literal["normalized", "paper"] = "normalized"
    # p_e(y|x) itself: "similarity" is Eq. (6); "logprob" (beyond the paper) is the target's exact mean token
    # log-prob of y, for engines that report prompt log-probs (docs/method.md, picaco/method/exact_pe.py).
    pe_estimator: Literal["similarity", "logprob"] = "similarity"
    q_phi_floor: float = Field(0.05, strict=True, gt=0, le=1)
    # 1 = Eq. (4) as written; 0 ablates the redundancy evaluator q_phi; -1 flips it.
    redundancy_weight: float = Field(1.0, strict=True, ge=-1, le=1)
    # picaco's extensions (docs/method.md); none changes an iteration, so none is checked on resume.
    judge_probe: bool = Field(True, strict=True, description="judge canned conforming/violating responses first "
                                                             "and stop when a value's scale is inverted or flat")
    held_out: int = Field(20, strict=True, ge=0, le=10_000,
                          description="prompts after X on which the final report compares seed and optimized (0: skip)")
    held_out_bootstrap: int = Field(1000, strict=True, ge=100, le=100_000,
                                    description="bootstrap resamples B of the held-out comparison's interval")
    # picaco's extensions that change iterations (docs/method.md, "Pareto front" and "Incremental runs");
    # recorded in a run's inputs only when not at their default, so default runs keep their fingerprint.
    selection: Literal["tc", "chebyshev"] = Field(
        "tc", description="M-step selection: tc = the paper's argmax of Eq. 4; chebyshev = steer toward the "
                          "Pareto front of the per-value scores (weighted Chebyshev over several weight vectors)")
    judge_per_value: bool = Field(False, strict=True, description="one Fig. 9 judge request per value instead of "
                                                                  "one for all: a value added later reuses the others")

    @field_validator("beta")
    @classmethod
    def _beta_positive(cls, v):
        if v is not None and v <= 0:
            raise ValueError(f"beta must be > 0, got {v}")
        return v

    @model_validator(mode="after")
    def _pool_sizes(self):
        if self.m2 > self.noisy_samples:
            raise ValueError(f"m2 ({self.m2}) cannot exceed noisy_samples ({self.noisy_samples})")
        return self


class RunConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    run_name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    composition: str = "hh_balance"  # a paper composition name or a path to a user YAML
    prompts: PromptSource = PromptSource(demo_family="hh")
    models: ModelsConfig = ModelsConfig()
    picaco: PicacoConfig = PicacoConfig()
    sampling: SamplingConfig = SamplingConfig()
    client: ClientConfig = ClientConfig()
    runs_dir: Path = Path("artifacts/runs")
    seed: int = Field(0, strict=True)
    # an earlier finished run in runs_dir to start from (its best instructions as e^0 and seeds);
    # recorded with its fingerprint in this run's inputs (picaco/method/incremental.py)
    from_run: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.run_name
