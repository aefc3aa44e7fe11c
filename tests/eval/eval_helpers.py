"""Helpers of the evaluation tests: a recording provider, registered with `register_kind`.

It plays every role deterministically from the request and its per-sample seed: value judge (Fig. 9,
JSON scores for the aspects listed in the prompt), relevance judge (Fig. 10), OPRO optimizer (<INS>...),
and target (a short answer that quotes the query). Every call is recorded (model, messages, n, first
sample index), and value-judge replies can be made unusable at a configurable rate; each such injected
reply is recorded with its prompt, so a test can count exactly which judge items had every attempt
spoiled.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from picaco.llm.providers.base import ChatCall, ChatReply, Completion, Provider

URIAL_FILE = "urial/inst_1k_v4.txt"


@dataclass
class Recorded:
    model: str
    messages: list[tuple[str, str]]
    n: int
    first_index: int
    seed: int | None

    @property
    def system(self) -> str | None:
        return next((c for r, c in self.messages if r == "system"), None)

    @property
    def user(self) -> str:
        return [c for r, c in self.messages if r == "user"][-1]


@dataclass
class Tape:
    calls: list[Recorded] = field(default_factory=list)
    injected: list[str] = field(default_factory=list)  # judge prompts whose reply was spoiled, one per spoiled reply
    malformed_rate: float = 0.0
    judge_fixed: int | None = None  # every value score, when set

    def by_model(self, model: str) -> list[Recorded]:
        return [c for c in self.calls if c.model == model]

    def judge_calls(self) -> list[Recorded]:
        return [c for c in self.calls if "Please act as an impartial judge" in c.user]

    def target_calls(self) -> list[Recorded]:
        return [c for c in self.calls if c.model == "target"]


TAPES: dict[str, Tape] = {}



def _aspects(prompt: str) -> list[str]:
    section = prompt.split("### Aspects", 1)[1].split("### Format", 1)[0]
    return [m.group(1) for m in re.finditer(r"^\s*- (.+?): ", section, re.MULTILINE)]


class RecordingProvider(Provider):
    def __init__(self, name, settings) -> None:
        super().__init__(name, settings)
        self.tape = TAPES[str(settings.options["tape"])]
        self.endpoint = f"recording:{settings.options['tape']}"

    async def generate(self, call: ChatCall) -> ChatReply:
        tape = self.tape
        tape.calls.append(Recorded(call.model, [(m.role, m.content) for m in call.messages], call.n,
                                   call.first_index, call.seed))
        user = [m.content for m in call.messages if m.role == "user"][-1]
        texts = []
        for k in range(call.n):
            seed = (call.seed or 0) + k
            rng = random.Random(f"{seed}|{call.messages}|{call.model}")
            texts.append(self._reply(rng, call, user))
        return ChatReply([Completion(t, "stop") for t in texts], prompt_tokens=10, completion_tokens=5 * len(texts))

    def _reply(self, rng: random.Random, call: ChatCall, user: str) -> str:
        tape = self.tape
        if "Please act as an impartial judge" in user:
            if rng.random() < tape.malformed_rate:
                tape.injected.append(user)
                return "I'm sorry, I cannot rate this response."
            scores = {name: {"reason": "ok", "score": tape.judge_fixed or rng.randint(1, 5)} for name in _aspects(user)}
            return json.dumps(scores)
        if "Rate the relevance of the response" in user:
            return json.dumps({"reason": "ok", "score": rng.randint(1, 5)})
        if "Your task is to generate the instruction <INS>" in user:
            return f"<INS>Embody every intended value with care, variant {rng.randint(0, 10**6)}.</INS>"
        words = " ".join(user.split()[:12])
        return f"Reply {rng.randint(0, 10**6)} about: {words}"


def eval_raw(tmp_path: Path, tape_key: str, **over) -> dict:
    """A small evaluation config whose every model is on the recording provider."""
    raw = {
        "name": "t",
        "compositions": ["hh_balance"],
        "methods": ["q"],
        "prompts": {"count": 2},
        "optimization_prompts": {"offset": 0, "count": 2},
        "protocol": {"judge_attempts": 2},
        "models": {"target": "rec/target", "judge": "rec/judge", "teacher": "rec/teacher", "optimizer": "rec/optimizer",
                   "scorer": "rec/scorer"},
        "client": {"cache_dir": str(tmp_path / "cache"),
                   "providers": {"rec": {"kind": "recording", "options": {"tape": tape_key}}},
                   "retry": {"base_delay_s": 0.001, "max_delay_s": 0.01}},
        "out_dir": str(tmp_path / "out"),
        # the recording judge scores from the request's seed, with no direction a probe could check;
        # tests/eval/test_eval_probe.py probes the world's judge
        "judge_probe": False,
    }
    for k, v in over.items():
        raw[k] = v
    return raw
