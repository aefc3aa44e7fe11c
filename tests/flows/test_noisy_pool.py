"""The noisy-pool flow under a Prefect test server, against the in-process simulator."""

from __future__ import annotations

import pytest
from tiny_run import small_run_config

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_noisy_pool_flow(tmp_path):
    from flows.noisy_pool import noisy_pool_flow

    raw = small_run_config(tmp_path, run_name="noisy-only", composition="harmlessness", prompts={"demo_family": "hh"},
                           picaco={"noisy_samples": 3, "buckets": 2, "samples_per_bucket": 1})
    out = noisy_pool_flow(config=raw)
    assert out == {"prompts": 3, "kept": 3 * 2, "observation_texts": 8}  # top-M2 per prompt; S = D
