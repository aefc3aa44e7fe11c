"""picaco: PICACO meta-instruction optimization (arXiv 2507.16679) with no Prefect import.

The public API:

    picaco.optimize(config)            run or resume Algorithm 1; returns an OptimizeResult (result.json)
    picaco.load_run_config(path)       a YAML run config
    picaco.load_composition(name)      values, seed instruction, demonstrations
    picaco.evaluate(eval_config)       the evaluation protocol and baselines

Submodules are imported on first use, so `import picaco` stays cheap (no torch, no SDKs).
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "optimize": ("picaco.method.run", "optimize"),
    "load_run_config": ("picaco.config", "load_run_config"),
    "RunConfig": ("picaco.base.config", "RunConfig"),
    "load_composition": ("picaco.values", "load_composition"),
    "evaluate": ("picaco.eval", "evaluate"),
    "load_eval_config": ("picaco.eval", "load_eval_config"),
    "LLMClient": ("picaco.llm.client", "LLMClient"),
    "ClientConfig": ("picaco.base.config", "ClientConfig"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'picaco' has no attribute {name!r}")


__all__ = list(_LAZY)
