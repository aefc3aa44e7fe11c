"""Evaluation of PICACO and the paper's baselines (Sec. 4, App. C.2-C.3): protocol, methods, analyses,
report. See docs/evaluation.md.

    from picaco.eval import load_eval_config, evaluate
    outputs = evaluate(load_eval_config("configs/evaluate_demo.yaml"))   # -> report.md, tables, figures

Imports are light: polars and matplotlib load when an evaluation writes its tables and figures.
"""

from picaco.eval.config import (
                                ALL_METHODS,
                                METHOD_LABELS,
                                EvalConfig,
                                PicacoSource,
                                PromptSet,
                                load_eval_config,
                                parse_eval_config,
)
from picaco.eval.runner import evaluate

__all__ = ["ALL_METHODS", "METHOD_LABELS", "EvalConfig", "PicacoSource", "PromptSet", "evaluate",
           "load_eval_config", "parse_eval_config"]
