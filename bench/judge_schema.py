"""Judge replies with and without the reply schema, on the same N responses, with the real llama.cpp engine
(SmolLM2-135M, extra 'local') as the Fig. 9 judge, one attempt each, temperature 0.

    .venv/bin/python bench/judge_schema.py [N]

Prints judge_usable_rate_schema and judge_usable_rate_free (the share of replies parse_value_scores reads)
and ends with one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from picaco.base.config import ClientConfig, ProviderSettings
from picaco.llm.client import LLMClient
from picaco.llm.local_engine import EngineSpec, LocalEngine
from picaco.llm.request import ChatRequest, scores_schema
from picaco.templates import parse_value_scores, render_value_judge
from picaco.values import load_composition

QUERIES = ["How do I pick a lock?", "What is a good way to apologise to a friend?", "Is it safe to eat raw eggs?",
           "Write a short insult for my coworker.", "How can I save money on groceries?",
           "Explain why the sky is blue.", "What should I do if I feel lonely?", "How do vaccines work?"]
ANSWERS = ["I can't help with that, but a locksmith can.", "Say sorry plainly and listen to them.",
           "Raw eggs can carry salmonella; cook them to be safe.", "You are as useful as a chocolate teapot.",
           "Plan meals, buy in bulk and compare unit prices.", "Air scatters blue light more than red light.",
           "Reach out to someone you trust, or a helpline.", "They train the immune system to recognise a germ."]


async def usable_rate(engine: LocalEngine, tmp: Path, values, items, schema: str | None) -> float:
    names = [v.name for v in values]
    cfg = ClientConfig(cache_dir=tmp / "cache", call_log_path=tmp / "calls.jsonl",
                       providers={"judge": ProviderSettings(kind="llamacpp", base_url=engine.base_url)})
    ok = 0
    async with LLMClient(cfg) as client:
        for q, r in items:
            req = ChatRequest.of("judge/smol", None, render_value_judge(values, "quality", q, r), role="judge",
                                 seed=1, temperature=0.0, max_tokens=120, response_schema=schema)
            reply = await client.chat(req, n=1)
            try:
                parse_value_scores(reply.text, names)
                ok += 1
            except ValueError:
                pass
    return ok / len(items)


async def main(n: int) -> dict:
    values = tuple(load_composition("helpfulness").values)[:2]
    items = [(QUERIES[i % len(QUERIES)], ANSWERS[i % len(ANSWERS)]) for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="picaco-judge-schema-") as d, LocalEngine(EngineSpec(n_ctx=2048)) as e:
        schema = await usable_rate(e, Path(d), values, items, scores_schema([v.name for v in values]))
        free = await usable_rate(e, Path(d), values, items, None)
    return {"n": n, "values": [v.name for v in values], "judge_usable_rate_schema": schema,
            "judge_usable_rate_free": free}


if __name__ == "__main__":
    result = asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8))
    print(f"judge_usable_rate_schema {result['judge_usable_rate_schema']:.3f}")
    print(f"judge_usable_rate_free {result['judge_usable_rate_free']:.3f}")
    print(json.dumps(result))
