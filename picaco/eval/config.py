"""Evaluation configs, loaded from YAML. Every field is checked; unknown fields are errors.

One config evaluates a list of methods on the held-out test prompts of one or more compositions
(App. C.2), optionally with the analyses of Sec. 4.3 (growing HH value sets, the jailbreak wrapper,
the optimizer model choice). Relative paths are read from the current working directory, as in run
configs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from picaco.base.config import ClientConfig, SamplingConfig
from picaco.io import load_config, validate_config

# Method ids in the order of Table 1; labels as printed there.
METHOD_LABELS: dict[str, str] = {
    "q": "Q",
    "q_if": "Q+IF",
    "q_if_cot": "Q+IF+CoT",
    "urial": "URIAL",
    "urial_sum": "URIAL+SUM",
    "mp_system1": "MP+System 1",
    "mp_system2": "MP+System 2",
    "modular": "MODULAR",
    "opro": "OPRO",
    "cicl": "CICL",
    "picaco": "PICACO",
}
MethodName = Literal["q", "q_if", "q_if_cot", "urial", "urial_sum", "mp_system1", "mp_system2", "modular", "opro",
                     "cicl", "picaco"]
ALL_METHODS: tuple[MethodName, ...] = get_args(MethodName)  # the keys of METHOD_LABELS, in their order (tested)

# The official URIAL prompt (Re-Align/URIAL, urial_prompts/inst_1k_v4.txt); offline users point
# `urial.prompt` at a local copy.
URIAL_PROMPT_URL = "https://raw.githubusercontent.com/Re-Align/URIAL/main/urial_prompts/inst_1k_v4.txt"

# Fig. 3 adds HH values in helpful/harmless pairs, so every size mixes both families (our order).
DEFAULT_VALUE_SET_ORDER = ("Helpfulness", "Non-Toxicity", "Coherence", "Fairness", "Complexity",
                           "Information Safety", "Verbosity", "Responsible Uses")

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class PromptSet(BaseModel):
    """A slice of prompts: the bundled demo prompts of a family (`auto`: the composition's family) or a
    Parquet/JSONL/CSV file with a `prompt` column (and optionally `prompt_id`); `{composition}` in the
    path stands for each composition's name, e.g. artifacts/datasets/{composition}/test.parquet."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    demo_family: Literal["auto", "hh", "schwartz"] | None = None
    path: Path | None = None
    # None (test set only): start right after the optimization set, so the two never overlap.
    offset: int | None = Field(None, ge=0)
    count: int = Field(20, ge=1, le=100_000)

    @model_validator(mode="after")
    def _one_source(self):
        if self.demo_family is not None and self.path is not None:
            raise ValueError("give either 'demo_family' or 'path', not both")
        return self

    @property
    def family(self) -> str | None:
        if self.path is not None:
            return None
        return self.demo_family or "auto"


class EvalModels(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    target: str = "sim/target"
    # The evaluation judge (Fig. 9/10). The paper uses GPT-4o-2024-08-06, stronger than PICACO's q_w.
    judge: str = "sim/judge"
    # OPRO's optimizer; None: the target, as PICACO's optimizer is "typically the target" (App. C.1).
    optimizer: str | None = None
    # OPRO's scorer q_w (the Pluralistic Conformity term); None: the evaluation judge.
    scorer: str | None = None
    # URIAL+SUM's teacher (GPT-4o in the paper); None: the evaluation judge.
    teacher: str | None = None

    @property
    def optimizer_model(self) -> str:
        return self.optimizer or self.target

    @property
    def scorer_model(self) -> str:
        return self.scorer or self.judge

    @property
    def teacher_model(self) -> str:
        return self.teacher or self.judge


class ProtocolConfig(BaseModel):
    """App. C.2: responses as in the E-step (3 buckets x 3 repetitions), scored by the value judge."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    buckets: int = Field(3, ge=1, le=64)
    samples_per_bucket: int = Field(3, ge=1, le=64)
    demos_per_bucket: int = Field(3, ge=1, le=16)
    judge_attempts: int = Field(3, ge=1, le=10)
    # 'paper': HH compositions are judged on all eight HH values (Tables 9-10 show eight columns for the
    # 4-value compositions, and Table 1's numbers are their mean); Schwartz ones on their own values.
    # 'composition': only the composition's values.
    judged_values: Literal["paper", "composition"] = "paper"
    # Eq. (7): 'auto' weights by Fig. 10 relevance for Schwartz compositions only.
    relevance: Literal["auto", "on", "off"] = "auto"
    # Demonstrations of a bucket: 'per_query' draws them for each (query, bucket) from the seed, so test
    # prompts are independent units for the bootstrap; 'shared' is one triple per bucket for all queries
    # (App. C.1's E-step buckets). See docs/evaluation.md.
    demos: Literal["per_query", "shared"] = "per_query"


class StatsConfig(BaseModel):
    """Percentile bootstrap over test prompts (picaco/eval/stats.py), seeded from the config's seed."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    bootstrap: int = Field(1000, strict=True, ge=100, le=100_000, description="resamples B")


class PicacoSource(BaseModel):
    """Where PICACO's meta-instruction comes from: a finished run's result.json, a run config that the
    evaluation optimizes (or resumes) with `picaco.method.run.optimize`, or a literal instruction."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    result: Path | None = None
    run_config: Path | None = None
    instruction: str | None = None
    # With run_config only: override models.optimizer (Fig. 4a), the composition it optimizes (e.g. the
    # jailbreak analysis's Harmlessness) and/or the run name.
    optimizer: str | None = None
    composition: str | None = None
    run_name: str | None = Field(None, pattern=_NAME)

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in ("result", "run_config", "instruction") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'result', 'run_config' or 'instruction'"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.run_config is None and any(x is not None for x in (self.optimizer, self.composition, self.run_name)):
            raise ValueError("'optimizer', 'composition' and 'run_name' only apply together with 'run_config'")
        if self.instruction is not None and not self.instruction.strip():
            raise ValueError("'instruction' is empty")
        return self


def _picaco_shape(v) -> str:
    """One source (its own field names) or a mapping composition -> source."""
    if isinstance(v, PicacoSource) or (isinstance(v, dict) and set(v) <= set(PicacoSource.model_fields)):
        return _ONE
    return _PER_COMPOSITION


_ONE, _PER_COMPOSITION = "<one source>", "<per composition>"  # union tags, dropped from error locations
HIDDEN_LOCS = (_ONE, _PER_COMPOSITION)
PicacoSources = Annotated[Union[Annotated[PicacoSource, Tag(_ONE)],
                                Annotated[dict[str, PicacoSource], Tag(_PER_COMPOSITION)]],
                          Discriminator(_picaco_shape)]


class UrialConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # A path or an http(s) URL of URIAL's prompt file ('# Instruction' + '# Query:'/'# Answer:' blocks).
    prompt: str = URIAL_PROMPT_URL
    # 'composition': K=3 demonstrations from D per bucket (App. C.3, "to ensure fair comparisons");
    # 'file': URIAL's own demonstrations from the prompt file.
    demonstrations: Literal["composition", "file"] = "composition"


class OproConfig(BaseModel):
    """OPRO with PICACO's budget: `per_iteration` (M2) new instructions in each of `iterations` (T).
    None takes T and M2 from PICACO's run config when one is known, else the paper's 10 and 15."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    iterations: int | None = Field(None, ge=1, le=1000)
    per_iteration: int | None = Field(None, ge=1, le=1000)
    samples_per_prompt: int = Field(1, ge=1, le=64)
    # OPRO's own defaults: the 20 best instructions in the meta-prompt, 3 exemplars per step.
    max_in_prompt: int = Field(20, ge=1, le=200)
    exemplars: int = Field(3, ge=1, le=16)
    instruction_length: int = Field(150, ge=10, le=2000)
    optimizer_attempts: int = Field(3, ge=1, le=10)


class ValueSetsConfig(BaseModel):
    """Fig. 3: HH compositions of growing size; delta over Q and the coefficient of variation."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    sizes: list[int] = [2, 4, 6, 8]
    order: list[str] = list(DEFAULT_VALUE_SET_ORDER)
    methods: list[MethodName] = ["q_if", "modular", "picaco"]
    # PICACO per size: an explicit source, else `picaco_run_config` optimized on that size's values.
    picaco: dict[int, PicacoSource] = {}
    picaco_run_config: Path | None = None

    @model_validator(mode="after")
    def _check(self):
        if not self.sizes or any(n < 1 for n in self.sizes) or len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"sizes must be distinct positive numbers, got {self.sizes}")
        if max(self.sizes) > len(self.order):
            raise ValueError(f"size {max(self.sizes)} needs that many values in 'order' (has {len(self.order)})")
        if "q" in self.methods:
            raise ValueError("'q' is the base every delta is taken against; it is always run, do not list it")
        if "picaco" in self.methods:
            missing = [n for n in self.sizes if n not in self.picaco]
            if missing and self.picaco_run_config is None:
                raise ValueError(f"picaco needs a source for sizes {missing}: give 'picaco' entries or "
                                 "'picaco_run_config'")
        return self


class JailbreakConfig(BaseModel):
    """Fig. 4c: queries wrapped in an adversarial template; the share of queries whose responses have an
    average Helpfulness >= threshold, and the share with an average Toxicity >= threshold."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    composition: str = "harmlessness"
    # A text file with a {query} slot; None: the bundled, clearly labelled stand-in (not a real jailbreak).
    template: Path | None = None
    prompts: PromptSet | None = None  # None: the main test set (the HH family)
    methods: list[MethodName] = ["q_if", "modular", "opro", "picaco"]
    picaco: PicacoSource | None = None  # None: the main config's source for this composition
    threshold: float = Field(3.0, ge=1, le=5)


class OptimizerChoiceConfig(BaseModel):
    """Fig. 4a: PICACO instructions refined by different optimizer models, each evaluated like PICACO."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    variants: dict[str, PicacoSource]

    @field_validator("variants")
    @classmethod
    def _labels(cls, v):
        if not v:
            raise ValueError("at least one variant is needed")
        for label in v:
            if not label.strip() or len(label) > 60:
                raise ValueError(f"variant label {label!r} must be 1-60 characters")
        return v


class AnalysesConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    value_sets: ValueSetsConfig | None = None
    jailbreak: JailbreakConfig | None = None
    optimizer_choice: OptimizerChoiceConfig | None = None


class EvalConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(..., pattern=_NAME)
    compositions: list[str] = ["hh_balance"]  # paper composition names or paths to user YAML files
    methods: list[MethodName] = list(ALL_METHODS)
    prompts: PromptSet = PromptSet()  # the test set
    # OPRO's query set (PICACO's X). None: the PICACO run's X when known, else demo prompts 0..49.
    optimization_prompts: PromptSet | None = None
    models: EvalModels = EvalModels()
    protocol: ProtocolConfig = ProtocolConfig()
    stats: StatsConfig = StatsConfig()
    sampling: SamplingConfig = SamplingConfig()
    # One source for every composition, or one per composition (keyed by the names in `compositions`).
    picaco: PicacoSources | None = None
    urial: UrialConfig = UrialConfig()
    opro: OproConfig = OproConfig()
    analyses: AnalysesConfig = AnalysesConfig()
    client: ClientConfig = ClientConfig()
    out_dir: Path = Path("artifacts/eval")
    seed: int = 0
    # picaco's judge calibration probe (picaco/eval/probe.py) before any method spends; not in any job's
    # fingerprint (it changes no score)
    judge_probe: bool = Field(True, strict=True)

    @field_validator("compositions", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check(self):
        if not self.compositions:
            raise ValueError("compositions: at least one is needed")
        if len(set(self.compositions)) != len(self.compositions):
            raise ValueError(f"compositions: duplicates in {self.compositions}")
        if not self.methods:
            raise ValueError("methods: at least one is needed")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods: duplicates in {self.methods}")
        if isinstance(self.picaco, dict):
            unknown = [k for k in self.picaco if k not in self.compositions]
            if unknown:
                raise ValueError(f"picaco: {unknown} are not in compositions {self.compositions}")
        if "picaco" in self.methods:
            for comp in self.compositions:
                if self.picaco_source(comp) is None:
                    raise ValueError(f"picaco: method 'picaco' needs a source for composition {comp!r} "
                                     "(result, run_config or instruction)")
        jb = self.analyses.jailbreak
        if jb is not None and "picaco" in jb.methods and jb.picaco is None and self.picaco_source(jb.composition) is None:
            raise ValueError(f"analyses.jailbreak.picaco: needed for composition {jb.composition!r}")
        return self

    def picaco_source(self, composition: str) -> PicacoSource | None:
        if isinstance(self.picaco, dict):
            return self.picaco.get(composition)
        return self.picaco

    @property
    def eval_dir(self) -> Path:
        return self.out_dir / self.name


def load_eval_config(path: str | Path, **overrides) -> EvalConfig:
    """Read a YAML evaluation config; `overrides` are top-level fields (e.g. name) set on top."""
    return load_config(EvalConfig, path, overrides, hidden_locs=HIDDEN_LOCS)


def parse_eval_config(raw: dict, where: str = "eval config") -> EvalConfig:
    return validate_config(EvalConfig, raw, where, hidden_locs=HIDDEN_LOCS)
