"""The knobs of the simulated value world. Every constant of docs/world.md lives here, with its default."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class WorldConfig(BaseModel):
    """Configuration of the 'values' world (picaco.sim.world). Frozen, so it can key caches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- judges
    judge_noise: float = Field(0.1, ge=0.0, le=1.0,
                               description="probability that a judged score moves by +-1 (clamped to 1-5)")
    malformed_rate: float = Field(0.02, ge=0.0, le=1.0,
                                  description="probability that a judge reply is unusable (truncated, prose, "
                                              "non-numeric score)")
    fence_rate: float = Field(0.1, ge=0.0, le=1.0,
                              description="probability that a well-formed judge reply is wrapped in ```json "
                                          "fences (still valid JSON inside)")
    judge_harm_flipped: bool = Field(False, description="answer a harm-scale judge prompt on the conformity scale "
                                                        "(5 = best), as a judge that reads Non-Toxicity as a virtue "
                                                        "would: what picaco's judge probe must catch")
    # --- articulation (Sec. 1, the Instruction Bottleneck)
    name_weight: float = Field(0.3, ge=0.0, le=1.0, description="articulation from naming the value")
    concept_levels: tuple[float, ...] = Field((0.0, 0.15, 0.25, 0.3),
                                              description="articulation from 0, 1, 2, 3+ distinct concepts")
    guidance_levels: tuple[float, ...] = Field((0.0, 0.2, 0.33, 0.4),
                                               description="articulation from 0, 1, 2, 3+ guidance phrases")
    guidance_depth: tuple[float, ...] = Field((0.0, 0.5, 0.8, 1.0),
                                              description="share of the depth gain from 0, 1, 2, 3+ guidance phrases")
    bottleneck_strength: float = Field(0.15, ge=0.0,
                                       description="beta_b: dilution D = 1 / (1 + beta_b * U), U = number of "
                                                   "values named without any articulation")
    # --- conflicts (Sec. 4.3)
    conflict_strength: float = Field(0.5, ge=0.0, le=1.0,
                                     description="gamma: p_v *= 1 - gamma * articulation of its rival")
    integration_window: int = Field(12, ge=2, description="tokens within which an integration word and "
                                                          "mentions of both rivals must fall (same sentence)")
    integration_resolves: bool = Field(True, description="an integrated pair escapes the conflict; False: a world "
                                                         "where the rivals conflict whatever the instruction says "
                                                         "(a real trade-off, for the Pareto view)")
    # --- relevance / fake alignment (Sec. 4.2)
    generic_base: float = Field(0.01, ge=0.0, le=1.0, description="phi_0: generic share of the raw model")
    generic_max: float = Field(0.7, ge=0.0, le=1.0, description="phi_max: generic share under endless value talk")
    stuffing_scale: float = Field(20.0, gt=0.0, description="S_0: value words at which 63% of the way to phi_max")
    relevance_guard: float = Field(0.8, ge=0.0, le=1.0,
                                   description="rho: full Relevancy articulation removes this share of phi")
    # --- copying (superficial alignment)
    copy_strength: float = Field(0.15, ge=0.0, le=1.0,
                                 description="kappa_0: chance per slot that a response copies a demonstration "
                                             "fragment (2 slots)")
    copy_invite_gain: float = Field(1.5, ge=0.0, description="kappa multiplier per copy-inviting phrase (max 2)")
    copy_discourage_factor: float = Field(0.25, ge=0.0, le=1.0,
                                          description="kappa multiplier when the instruction discourages copying")
    copy_max: float = Field(0.9, ge=0.0, le=1.0, description="cap on kappa")
    # --- optimizer role (Fig. 8)
    null_optimizer: bool = Field(False, description="return the best shown instruction unchanged")
    optimizer_elaboration: float = Field(0.35, ge=0.0, le=1.0,
                                         description="chance per intended value that the optimizer elaborates it")
    # --- data
    lexicon_path: str | None = Field(None, description="alternative lexicon YAML (default: the bundled one)")

    @model_validator(mode="after")
    def _levels(self) -> "WorldConfig":
        for name in ("concept_levels", "guidance_levels", "guidance_depth"):
            levels = getattr(self, name)
            if len(levels) < 2 or levels[0] != 0.0 or any(b < a for a, b in zip(levels, levels[1:])):
                raise ValueError(f"{name} must start at 0, be non-decreasing and have at least 2 entries, "
                                 f"got {levels}")
            if any(x < 0 or x > 1 for x in levels):
                raise ValueError(f"{name} entries must lie in [0, 1], got {levels}")
        if len(self.guidance_depth) != len(self.guidance_levels):
            raise ValueError("guidance_depth must have as many entries as guidance_levels")
        total = self.name_weight + self.concept_levels[-1] + self.guidance_levels[-1]
        if total > 1.0 + 1e-9:
            raise ValueError(f"name_weight + max(concept_levels) + max(guidance_levels) must be <= 1, got {total}")
        if self.generic_max < self.generic_base:
            raise ValueError("generic_max must be >= generic_base")
        return self

    @property
    def max_concepts(self) -> int:
        return len(self.concept_levels) - 1

    @property
    def max_guidance(self) -> int:
        return len(self.guidance_levels) - 1
