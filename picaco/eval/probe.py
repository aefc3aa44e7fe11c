"""The judge calibration probe of an evaluation (picaco/method/probe.py; docs/evaluation.md): before any
method spends, every judge the evaluation will trust scores the canned conforming/violating responses of
the values it will judge, with the wording it will use. The evaluation judge (Fig. 9) is probed on each
job's judged values; OPRO's scorer q_w on its composition's values. A judge on an inverted or flat scale
stops the evaluation in one line; the probes are recorded in `<eval_dir>/judge_probe.json`.

The calls go through the evaluation's client and cache: a rerun costs nothing.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial

from picaco.base.config import ClientConfig
from picaco.eval.config import EvalConfig
from picaco.eval.judging import JudgeSetup, judge_setup, judge_values
from picaco.io import atomic_write_text
from picaco.llm.client import LLMClient
from picaco.method.probe import JudgeProbe, probe_error, probe_values
from picaco.values import load_composition

PROBE_RECORD = "judge_probe.json"
SKIP = "set judge_probe: false in the evaluation config"


def judges_to_probe(config: EvalConfig, jobs) -> list[tuple[str, JudgeSetup]]:
    """(judge model, setup) pairs the jobs will use, each once: the evaluation judge with each job's judged
    values and wording, and OPRO's scorer with its composition's own values."""
    out: dict[tuple, tuple[str, JudgeSetup]] = {}
    for job in jobs:
        comp = load_composition(job.composition)
        pairs = [(config.models.judge, judge_setup(comp, job.judged_values, config.protocol.relevance))]
        if job.method == "opro":
            pairs.append((config.models.scorer_model, judge_setup(comp, "composition", "off")))
        for model, setup in pairs:
            out.setdefault((model, tuple(setup.value_names), setup.variant), (model, setup))
    return list(out.values())


async def _probe_all(config: EvalConfig, client_config: ClientConfig,
                     judges: list[tuple[str, JudgeSetup]]) -> list[JudgeProbe]:
    async with LLMClient(client_config) as client:
        async def one(model: str, setup: JudgeSetup) -> JudgeProbe:
            judge = partial(judge_values, client, setup, model=model, attempts=config.protocol.judge_attempts,
                            sampling=config.sampling, seed=config.seed)
            return await probe_values(judge, setup.value_names, judge_model=model, variant=setup.variant)

        return list(await asyncio.gather(*[one(m, s) for m, s in judges]))


def probe_eval_judges(config: EvalConfig, jobs, client_config: ClientConfig) -> list[JudgeProbe]:
    """Probe every judge of the jobs, record the probes, and stop on the first that fails."""
    probes = asyncio.run(_probe_all(config, client_config, judges_to_probe(config, jobs)))
    record = [p.model_dump(mode="json") for p in probes]
    atomic_write_text(config.eval_dir / PROBE_RECORD, json.dumps(record, indent=2))
    for probe in probes:
        if probe.failed:
            raise probe_error(probe, check=f"the judge model {probe.judge} (models.judge or models.scorer) and its "
                                           f"replies in {client_config.call_log_path}", skip=SKIP)
    return probes
