"""Money per token, from a price table the user can extend."""

from __future__ import annotations

import fnmatch
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from picaco.base.errors import ConfigError
from picaco.io import yaml_problem


class Price(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    input: float  # USD per million prompt tokens
    output: float = 0.0  # USD per million completion tokens


class PriceTable:
    def __init__(self, prices: dict[str, Price]) -> None:
        self._exact = {k: v for k, v in prices.items() if not any(c in k for c in "*?[")}
        self._patterns = [(k, v) for k, v in prices.items() if k not in self._exact]
        self._memo: dict[str, Price | None] = {}

    @classmethod
    def load(cls, *extra_paths: str | Path | None) -> "PriceTable":
        text = resources.files("picaco.llm").joinpath("prices.yaml").read_text(encoding="utf-8")
        prices = _parse(text, "picaco/llm/prices.yaml")
        for path in extra_paths:
            if path:
                p = Path(path)
                if not p.is_file():
                    raise ConfigError(f"price table {p} does not exist")
                prices.update(_parse(p.read_text(encoding="utf-8"), str(p)))
        return cls(prices)

    def price(self, model: str) -> Price | None:
        if model not in self._memo:
            found = self._exact.get(model)
            if found is None:
                # the longest matching pattern is the most specific one
                for pattern, price in sorted(self._patterns, key=lambda kv: -len(kv[0])):
                    if fnmatch.fnmatchcase(model, pattern):
                        found = price
                        break
            self._memo[model] = found
        return self._memo[model]

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD, or None when the model has no price (reported as unpriced tokens, never as free)."""
        p = self.price(model)
        if p is None:
            return None
        return (prompt_tokens * p.input + completion_tokens * p.output) / 1e6


def _parse(text: str, where: str) -> dict[str, Price]:
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"price table {where} is not valid YAML ({yaml_problem(exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"price table {where} must map 'provider/model' to {{input, output}}")
    out = {}
    for model, entry in raw.items():
        try:
            out[str(model)] = Price.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"price table {where}, model {model!r}: {first['loc']} {first['msg']}") from None
    return out
