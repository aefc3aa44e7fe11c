"""Flow: sample the noisy pool R^n once (raw model, no instruction)."""

from __future__ import annotations

from prefect import flow

from flows._common import resolve_config
from tasks.optimize import noisy_pool_task


@flow(name="picaco-noisy-pool")
def noisy_pool_flow(config_path: str | None = None, config: dict | None = None, run_name: str | None = None) -> dict:
    cfg = resolve_config(config_path, config, run_name)
    return noisy_pool_task(cfg.model_dump(mode="json"))
