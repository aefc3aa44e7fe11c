"""Evaluation of PICACO and the paper's baselines (Sec. 4, App. C.2-C.3): protocol, methods, analyses,
report. See docs/evaluation.md.

    from picaco.eval import load_eval_config, evaluate
    outputs = evaluate(load_eval_config("configs/evaluate_demo.yaml"))   # -> report.md, tables, figures

Imports are light: the methods, polars and matplotlib load when an evaluation runs.
"""

from picaco.eval.config import (ALL_METHODS, METHOD_LABELS, EvalConfig, PicacoSource, PromptSet, load_eval_config,
                                parse_eval_config)


def evaluate(config: EvalConfig, on_event=None) -> dict:
    """Run every job of `config` (resuming from its store) and write the report; see picaco.eval.runner."""
    from picaco.eval.runner import evaluate as _evaluate

    return _evaluate(config, on_event=on_event)


__all__ = ["ALL_METHODS", "METHOD_LABELS", "EvalConfig", "PicacoSource", "PromptSet", "evaluate",
           "load_eval_config", "parse_eval_config"]
