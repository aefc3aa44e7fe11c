"""`picaco estimate` on a config with `picaco.pe_estimator: logprob` (exact p_e, picaco/method/exact_pe.py).

The simulated run cannot echo prompt log-probs, so it estimates p_e with Eq. (6), as the similarity
estimator does; its call log is then turned into the exact estimator's: the Eq. 6 sample calls of the
M-steps (one request of n samples per candidate and prompt) are taken out, and in their place come the
echo calls the exact estimator makes on the same candidates and pools, each a distinct rendered text
once (the cache answers a repeat):

    per candidate, per prompt with a non-empty aligned pool: 1 echo of the prompt (the prefix),
    then 1 echo of the prompt with each pooled response as the assistant's turn.

An echo's prompt tokens are those of the text rendered with the target's own chat template (counted with
the simulator's token counter, like every other figure of the estimate), its completion 1 token
(max_tokens 1). The pooled responses are the simulator's; a real model's are at most `target_max_tokens`,
which the upper bound uses.
"""

from __future__ import annotations

from picaco.base.config import RunConfig
from picaco.llm.logprobs import chat_template_for, render_pair
from picaco.llm.providers import endpoint_identity
from picaco.llm.request import split_model
from picaco.method.context import RunContext, instructed_request
from picaco.method.exact_pe import PE_DEMONSTRATIONS
from picaco.method.inputs import run_inputs
from picaco.method.store import RunStore
from picaco.sim.engine import count_tokens


def exact_pe_lines(config: RunConfig, sim_cfg: RunConfig, lines: list[dict]) -> list[dict]:
    """The simulated run's call-log lines with its M-steps' Eq. 6 samples replaced by the exact estimator's
    echo calls (`op: score`; each call line also carries `prompt_tokens_bound`, its prompt with the response
    at target_max_tokens)."""
    template = chat_template_for(split_model(config.models.target)[0], config.client.providers)
    inputs = run_inputs(sim_cfg)  # reads the run's inputs; writes nothing
    ctx = RunContext(config=sim_cfg, composition=inputs.composition, prompts=inputs.prompts, client=None)
    endpoint = endpoint_identity(split_model(sim_cfg.models.target)[0], sim_cfg.client.providers)
    max_tokens = config.sampling.target_max_tokens
    sample_keys: set[str] = set()
    echoes: dict[str, int] = {}  # rendered text -> the tokens its response may add in a real run
    for state in RunStore(sim_cfg.run_dir).iterations():
        for candidate in state.candidates:
            for prompt in ctx.prompts:
                request = instructed_request(ctx, candidate.instruction, list(PE_DEMONSTRATIONS), prompt.text)
                sample_keys.add(request.sample_keys(endpoint, 0, 1)[0])
                for entry in state.pools.get(prompt.prompt_id, []):
                    prefix, full = render_pair(template, request.messages, entry.text)
                    echoes.setdefault(prefix, 0)
                    echoes.setdefault(full, max(0, max_tokens - count_tokens(entry.text)))
    kept = [line for line in lines if not (line.get("role") == "target" and line.get("key") in sample_keys)]
    model = config.models.target
    for text, slack in echoes.items():
        tokens = count_tokens(text)
        kept.append({"kind": "call", "op": "score", "role": "target", "model": model, "n": 1, "calls": 1,
                     "prompt_tokens": tokens, "completion_tokens": 1, "prompt_tokens_bound": tokens + slack})
        kept.append({"kind": "score", "role": "target", "model": model, "n": 1})
    return kept
