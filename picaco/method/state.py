"""The state of Algorithm 1 as typed, frozen records: what each step takes and returns, and what the run
store keeps on disk (one file per step, picaco/method/store.py)."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict

from picaco.method.pools import AlignedEntry, NoisyEntry


class Record(BaseModel):
    """Every state record: immutable, and a field it does not know is an error (a damaged or foreign file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class NoisyState(Record):
    observation: list[str]  # S
    pools: dict[str, list[NoisyEntry]]  # prompt_id -> top-M2
    filtered: int = 0  # raw, reference and S samples refused by a content filter (missing)


class Candidate(Record):
    instruction: str
    born: int  # iteration that proposed it (0: the seed)
    tc: float | None = None  # TC_e on the pools of the iteration that last scored it
    aligned_term: float | None = None
    noisy_term: float | None = None
    # per value: the pool's 1-5 judge scores weighted by the candidate's normalized p_e, on the same pools
    # (picaco/method/front.py); None for records written before picaco kept them
    value_scores: dict[str, float] | None = None


def is_scored(candidate: Candidate) -> bool:
    """TC_e is known: not None (never scored) and not NaN (no prompt had judged responses)."""
    return candidate.tc is not None and math.isfinite(candidate.tc)


def tc_rank(candidate: Candidate) -> float:
    """TC_e for ordering: an unscored candidate ranks lowest, wherever candidates are ordered."""
    tc = candidate.tc
    return tc if tc is not None and math.isfinite(tc) else -math.inf


def best_first(candidates: list[Candidate]) -> list[Candidate]:
    """Highest TC_e first; ties go to the older candidate, then to the text."""
    return sorted(candidates, key=lambda c: (-tc_rank(c), c.born, c.instruction))


class EStepReport(Record):
    instruction: str
    responses: int
    judged: int
    missing: int  # responses with no usable judge reply after every attempt
    judge_attempts: int
    filtered: int = 0  # target samples refused by a content filter: missing responses, never judged
    judge_filtered: int = 0  # judge replies refused by a content filter (asked again, as unusable ones are)
    value_means: dict[str, float | None]  # mean 1-5 score per value over judged responses; None: none judged
    conformity: float | None  # mean over values of value_means
    mean_q_phi: float | None


class EStepTally(Record):
    """Sums behind an EStepReport; tallies of disjoint prompt shards add up to the whole step's."""

    responses: int = 0
    judged: int = 0
    missing: int = 0
    judge_attempts: int = 0
    filtered: int = 0
    judge_filtered: int = 0
    score_sums: dict[str, float] = {}
    q_phi_sum: float = 0.0

    def __add__(self, other: "EStepTally") -> "EStepTally":
        sums = dict(self.score_sums)
        for v, x in other.score_sums.items():
            sums[v] = sums.get(v, 0.0) + x
        return EStepTally(responses=self.responses + other.responses, judged=self.judged + other.judged,
                          missing=self.missing + other.missing,
                          judge_attempts=self.judge_attempts + other.judge_attempts,
                          filtered=self.filtered + other.filtered,
                          judge_filtered=self.judge_filtered + other.judge_filtered,
                          score_sums=sums, q_phi_sum=self.q_phi_sum + other.q_phi_sum)

    def report(self, instruction: str, value_names: list[str]) -> EStepReport:
        means = {v: (self.score_sums.get(v, 0.0) / self.judged if self.judged else None) for v in value_names}
        return EStepReport(instruction=instruction, responses=self.responses, judged=self.judged, missing=self.missing,
                           judge_attempts=self.judge_attempts, filtered=self.filtered,
                           judge_filtered=self.judge_filtered, value_means=means,
                           conformity=float(np.mean(list(means.values()))) if self.judged else None,
                           mean_q_phi=self.q_phi_sum / self.responses if self.responses else None)


class EStepState(Record):
    t: int
    pools: dict[str, list[AlignedEntry]]
    report: EStepReport


class EStepShard(Record):
    """The sampling and judging of one shard of X (prompts shard, shard+n_shards, ...)."""

    t: int
    shard: int
    n_shards: int
    fresh: dict[str, list[AlignedEntry]]
    tally: EStepTally


class Proposal(Record):
    """What one optimizer slot of the M-step gave: an instruction, or why not."""

    slot: int
    instruction: str | None
    reason: str | None  # why the slot gave no instruction (no <INS>, empty, refused)
    attempts: int  # optimizer requests made, retries included
    filtered: int  # replies refused by a content filter


class MStepReport(Record):
    proposed: int
    optimizer_attempts: int = 0  # optimizer requests made, retries included
    optimizer_filtered: int = 0  # optimizer replies refused by a content filter (asked again)
    pe_filtered: int = 0  # p_e samples of the candidates refused by a content filter (left out of Eq. 6)
    new_unique: int
    skipped: list[str]  # why an optimizer slot gave no candidate (no <INS>, empty, duplicate)
    kept: int
    best_changed: bool


class IterationState(Record):
    """Everything needed to resume after iteration t."""

    t: int
    best: Candidate
    candidates: list[Candidate]
    pools: dict[str, list[AlignedEntry]]
    estep: EStepReport
    mstep: MStepReport | None = None
    usage_by_role: dict[str, dict] = {}


def initial_iteration(seed_instruction: str, *more: str) -> IterationState:
    """Iteration 0: e^0 is the composition's seed meta-instruction (Tables 2-3), pools are empty. A
    from_run run (picaco/method/incremental.py) passes the earlier run's best instruction and its next
    best candidates: all are existing candidates of iteration 1, the first is e^0."""
    cands = [Candidate(instruction=text, born=0) for text in dict.fromkeys((seed_instruction, *more))]
    empty = EStepReport(instruction=seed_instruction, responses=0, judged=0, missing=0, judge_attempts=0,
                        value_means={}, conformity=None, mean_q_phi=None)
    return IterationState(t=0, best=cands[0], candidates=cands, pools={}, estep=empty)


def filtered_replies(noisy: NoisyState | None, iterations: list[IterationState],
                     final: EStepReport | None = None) -> int:
    """Every reply of a run that a content filter refused (each counted as missing where it occurred):
    the noisy pool's, each iteration's E-step (responses and judge replies) and M-step (optimizer replies
    and p_e samples), and the final scoring's."""
    total = noisy.filtered if noisy is not None else 0
    for state in iterations:
        total += state.estep.filtered + state.estep.judge_filtered
        if state.mstep is not None:
            total += state.mstep.optimizer_filtered + state.mstep.pe_filtered
    if final is not None:
        total += final.filtered + final.judge_filtered
    return total
